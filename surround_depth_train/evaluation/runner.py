"""Evaluate a depth model on a surround dataset: metrics per camera and over the rig, consistency, pictures.

One pass over the dataset, one forward per camera set (``depth_only=True``, as deployed), then for each camera:

- LiDAR GT: at the dataset's native resolution where it has one (``depth_native``; the prediction is upsampled
  bilinearly to it, as SurroundDepth evaluates), else at network resolution (``depth`` / ``depth_mask``);
- dense GT, where the dataset has it (SurroundSim), reported separately: mask ``min < gt < max`` and ``self_mask``;
- the seven metrics from :mod:`surround_depth_train.metrics` (the one implementation), averaged per camera, then
  over cameras;
- non-finite predictions: counted per camera (pixels, images, and the GT pixels they cover, which the metrics
  cannot use) and reported, never dropped silently;
- cross-view consistency of the predictions (:mod:`.consistency`) with the ego pose at each camera's stamp
  (``T_world_base_cams``) where the sample has it.

The first ``pictures`` camera sets also give a depth mosaic and a bird's-eye view of the fused predicted cloud
against the LiDAR sweep. Latency is measured in the same run: the median of a few forward passes of one camera set.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from surround_depth_train.data import schema as S
from surround_depth_train.data.schema import collate_surround
from surround_depth_train.evaluation.consistency import (ConsistencyAccumulator, ConsistencySettings,
                                                         view_consistency)
from surround_depth_train.evaluation.report import depth_mosaic, save_bev
from surround_depth_train.geometry.lidar import rig_depth_to_cloud
from surround_depth_train.geometry.rig import Camera, CameraRig
from surround_depth_train.geometry.transforms import invert_transform, transform_points
from surround_depth_train.metrics import MetricsAccumulator
from surround_depth_train.visualize import save_png

__all__ = ['evaluate_model', 'measure_latency', 'count_parameters', 'sample_rig']

#: Camera sets whose dense GT also goes through the consistency measure (its floor, reported beside the model's).
DENSE_REFERENCE_SETS = 2


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def measure_latency(model: nn.Module, images: torch.Tensor, runs: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Median wall time of ``runs`` forward passes (``depth_only=True``) of ``images`` ``[N, 3, H, W]``."""
    device = images.device
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    times = []
    for i in range(warmup + runs):
        sync()
        t0 = time.perf_counter()
        model(images, depth_only=True)
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return {'median_ms': float(statistics.median(times)), 'runs': runs, 'device': str(device),
            'batch': f'{images.shape[0]} x {images.shape[2]} x {images.shape[3]}'}


def sample_rig(sample: Mapping[str, Any], names: list[str], b: int | None = None) -> CameraRig:
    """The rig of one (collated: row ``b``) sample at network resolution, from its own ``K`` and extrinsics."""
    K = sample[S.K] if b is None else sample[S.K][b]
    T = sample[S.T_BASE_CAM] if b is None else sample[S.T_BASE_CAM][b]
    h, w = sample[S.IMAGE].shape[-2:]
    return CameraRig([Camera(name=n, K=K[i].double().cpu().numpy(), width=int(w), height=int(h),
                             T_base_cam=T[i].double().cpu().numpy()) for i, n in enumerate(names)])


def _poses(batch: Mapping[str, Any], b: int) -> tuple[np.ndarray | None, str]:
    if S.T_WORLD_BASE_CAMS in batch:
        return batch[S.T_WORLD_BASE_CAMS][b].double().cpu().numpy(), "each camera's stamp (T_world_base_cams)"
    n = batch[S.IMAGE].shape[1]
    pose = batch[S.T_WORLD_BASE][b].double().cpu().numpy()
    return np.repeat(pose[None], n, axis=0), 'the LiDAR stamp for all cameras (the dataset has no T_world_base_cams)'


def _fused_cloud(depths: np.ndarray, rig: CameraRig, masks: np.ndarray, poses: np.ndarray,
                 T_world_base: np.ndarray) -> dict[str, np.ndarray]:
    """The cameras' points in base_link at the LiDAR stamp (each camera moved by the ego motion since its stamp)."""
    cloud = rig_depth_to_cloud(list(depths), rig, masks=list(masks), stride=2)
    to_lidar = invert_transform(T_world_base)
    points = cloud['points'].astype(np.float64)
    for i in range(len(rig)):
        sel = cloud['camera'] == i
        points[sel] = transform_points(to_lidar @ poses[i], points[sel])
    return {'points': points.astype(np.float32), 'camera': cloud['camera']}


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset, *, device: torch.device | str = 'cpu', batch_size: int = 1,
                   num_workers: int = 0, max_samples: int | None = None, pictures: int = 2,
                   out_dir: str | Path | None = None, latency_runs: int = 5, consistency: bool = True,
                   progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` (module docstring); pictures go to ``out_dir/pictures`` when given.

    Returns:
        A dict of plain values: ``lidar`` (with ``per_scene``: scene -> mean metrics), ``lidar_median_scaled`` (each image's prediction scaled by
        ``median(gt) / median(pred)`` first: the structure alone, Monodepth2's protocol) and ``dense``
        (``MetricsAccumulator.summary()``, ``dense`` None without
        dense GT), ``nonfinite``, ``consistency``, ``latency``, ``parameters``, ``gt_resolution`` and
        ``pictures`` (paths relative to ``out_dir``).
    """
    from tqdm import tqdm

    device = torch.device(device)
    model = model.to(device).eval()
    names = list(dataset.camera_names)
    n_cams = len(names)
    lo, hi = float(dataset.min_depth), float(dataset.max_depth)
    count = len(dataset) if max_samples is None else min(len(dataset), int(max_samples))
    if count < 1:
        raise ValueError(f'nothing to evaluate: the dataset has {len(dataset)} samples and max_samples is '
                         f'{max_samples}')
    subset = torch.utils.data.Subset(dataset, range(count))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate_surround,
                        num_workers=num_workers)
    lidar_acc, dense_acc = MetricsAccumulator(names), MetricsAccumulator(names)
    scene_acc: dict[str, MetricsAccumulator] = {}  # LiDAR metrics per scene (bootstraps over scenes need them)
    structure_acc = MetricsAccumulator(names)  # per-image median scaling: structure, whatever the metric scale
    cons_acc = ConsistencyAccumulator(names)
    dense_cons: list[float] = []
    nf_pixels, nf_images, nf_gt = ({n: 0 for n in names} for _ in range(3))
    has_dense, gt_resolution, poses_note = False, None, None
    picture_paths: list[str] = []
    first_images = None
    pic_dir = None if out_dir is None else Path(out_dir) / 'pictures'
    seen = 0
    for batch in tqdm(loader, desc='evaluate', unit='set', disable=not progress):
        images = batch[S.IMAGE].to(device)
        B = images.shape[0]
        if first_images is None:
            first_images = images[0]
        depth = model(images.flatten(0, 1), depth_only=True).depth.float()
        settings = ConsistencySettings(min_depth=lo, max_depth=hi,
                                       stride=ConsistencySettings.stride_for(*depth.shape[-2:]))
        depth = depth.reshape(B, n_cams, 1, *depth.shape[-2:])
        finite = torch.isfinite(depth)
        if S.DEPTH_NATIVE in batch:
            gt, gt_mask = batch[S.DEPTH_NATIVE], batch[S.DEPTH_NATIVE_MASK]
            pred_gt = F.interpolate(depth.flatten(0, 1), size=gt.shape[-2:], mode='bilinear',
                                    align_corners=False).reshape(B, n_cams, 1, *gt.shape[-2:]).cpu()
        else:
            gt, gt_mask, pred_gt = batch[S.DEPTH], batch[S.DEPTH_MASK], depth.cpu()
        gt_resolution = f'{gt.shape[-1]} x {gt.shape[-2]}' + (' (native)' if S.DEPTH_NATIVE in batch else
                                                               ' (network resolution)')
        lidar_acc.add_batch(pred_gt, gt, lo, hi, masks=gt_mask, camera_names=names)
        for b, scene in enumerate(_scenes(batch, seen, B)):
            scene_acc.setdefault(scene, MetricsAccumulator(names)).add_batch(
                pred_gt[b:b + 1], gt[b:b + 1], lo, hi, masks=gt_mask[b:b + 1], camera_names=names)
        structure_acc.add_batch(pred_gt, gt, lo, hi, masks=gt_mask, median_scaling=True, camera_names=names)
        nonfinite_gt = (gt_mask & ~torch.isfinite(pred_gt)).flatten(2).sum(-1)  # [B, N]
        for i, name in enumerate(names):
            bad = (~finite[:, i]).flatten(1).sum(-1).cpu()
            nf_pixels[name] += int(bad.sum())
            nf_images[name] += int((bad > 0).sum())
            nf_gt[name] += int(nonfinite_gt[:, i].sum())
        dense = dense_mask = None
        if S.DEPTH_DENSE in batch:
            has_dense = True
            dense = batch[S.DEPTH_DENSE]
            dense_mask = (dense > lo) & (dense < hi) & batch[S.SELF_MASK]
            dense_acc.add_batch(depth.cpu(), dense, lo, hi, masks=dense_mask, camera_names=names)
        pred_np = depth[:, :, 0].cpu().numpy()
        usable = batch[S.SELF_MASK][:, :, 0].numpy()
        if S.DYNAMIC_MASK in batch:
            usable = usable & ~batch[S.DYNAMIC_MASK][:, :, 0].numpy()
        for b in range(B):
            poses, poses_note = _poses(batch, b)
            K, T = batch[S.K][b].double().numpy(), batch[S.T_BASE_CAM][b].double().numpy()
            if consistency:
                cons_acc.add(view_consistency(pred_np[b], K, T, settings, poses, usable[b]))
                if dense is not None and seen < DENSE_REFERENCE_SETS:
                    ref = view_consistency(dense[b, :, 0].numpy(), K, T, settings, poses, usable[b])
                    dense_cons += [v['median'] for v in ref.values() if v is not None]
            if pic_dir is not None and seen < pictures:
                picture_paths += _pictures(pic_dir, seen, batch, b, pred_np[b], names, lo, hi, poses)
            seen += 1
    cons = None
    if consistency:
        cons = cons_acc.summary()
        cons['poses'] = poses_note
        cons['dense_reference'] = float(np.mean(dense_cons)) if dense_cons else None
    latency = measure_latency(model, first_images, runs=latency_runs) if first_images is not None else None
    lidar = lidar_acc.summary()
    lidar['per_scene'] = {scene: acc.summary()['mean'] for scene, acc in scene_acc.items()}
    return {
        'lidar': lidar,
        'lidar_median_scaled': structure_acc.summary(),
        'dense': dense_acc.summary() if has_dense else None,
        'nonfinite': {'pixels': nf_pixels, 'images': nf_images, 'gt_pixels': nf_gt,
                      'pixels_total': sum(nf_pixels.values()), 'images_total': sum(nf_images.values()),
                      'gt_pixels_total': sum(nf_gt.values())},
        'consistency': cons,
        'latency': latency,
        'parameters': count_parameters(model),
        'samples': seen,
        'gt_resolution': gt_resolution,
        'pictures': picture_paths,
    }


def _scenes(batch: Mapping[str, Any], first: int, count: int) -> list[str]:
    """The scene of each sample of ``batch`` (the sample's index where the dataset names no scene)."""
    scenes = (batch.get(S.META) or {}).get('scene') if isinstance(batch.get(S.META), Mapping) else None
    if scenes is None or len(scenes) != count:
        return [f'sample-{first + b}' for b in range(count)]
    return [str(s) for s in scenes]


def _pictures(pic_dir: Path, index: int, batch: Mapping[str, Any], b: int, pred: np.ndarray, names: list[str],
              lo: float, hi: float, poses: np.ndarray) -> list[str]:
    """Write ``mosaic_<index>.png`` and ``bev_<index>.png``; return their paths relative to the report."""
    gt, gt_mask = batch[S.DEPTH][b, :, 0].numpy(), batch[S.DEPTH_MASK][b, :, 0].numpy()
    dense = dense_mask = None
    if S.DEPTH_DENSE in batch:
        dense = batch[S.DEPTH_DENSE][b, :, 0].numpy()
        dense_mask = (dense > lo) & (dense < hi) & batch[S.SELF_MASK][b, :, 0].numpy()
    picture = depth_mosaic(batch[S.IMAGE][b].numpy(), pred, names, lo, hi, gt=gt, gt_mask=gt_mask, dense=dense,
                           dense_mask=dense_mask)
    mosaic_path = pic_dir / f'mosaic_{index:03d}.png'
    save_png(mosaic_path, picture)
    rig = sample_rig(batch, names, b)
    valid = np.isfinite(pred) & (pred > lo) & (pred < hi) & batch[S.SELF_MASK][b, :, 0].numpy()
    cloud = _fused_cloud(pred, rig, valid, poses, batch[S.T_WORLD_BASE][b].double().numpy())
    lidar = batch[S.LIDAR][b, :int(batch[S.LIDAR_COUNT][b]), :3].numpy()
    meta = batch[S.META]
    title = f'{meta["scene"][b]} frame {meta["frame"][b]}: fused prediction (colours) vs LiDAR (grey)'
    bev_path = pic_dir / f'bev_{index:03d}.png'
    save_bev(bev_path, cloud, lidar, names, title)
    return [f'pictures/{mosaic_path.name}', f'pictures/{bev_path.name}']
