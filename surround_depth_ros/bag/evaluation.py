"""Offline evaluation of a model on a bag: the node's own code path, scored against the bag's LiDAR (no rclpy).

The images and ``camera_info`` of the bag go, in recording order and with their stamps as the clock, through the
node's :class:`~surround_depth_train.data.rosbag.sync.ApproximateTimeSync` (the node's default slop, queue and
timeout), each set through :class:`~surround_depth_train.data.rosbag.frames.FrameDecoder` and
:class:`~surround_depth_ros.pipeline.DepthPipeline` (the engine's batched forward, the node's depth limits and fused cloud, motion-compensated with the bag's
odometry), and each camera's depth is scored by :class:`~surround_depth_ros.bag.scoring.DepthScorer` against the
LiDAR. The report is the evaluation command's (``surround_depth_train.evaluation.report``): Table I per camera and
over the rig, non-finite counts, depth mosaics and the bird's-eye view of the fused cloud over the LiDAR sweep.
Everything is computed before anything is written, so a bag that fails half-way leaves no report.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from surround_depth_train.data.rosbag.reader import BagSource, sync_sets
from surround_depth_ros.bag.scoring import DepthScorer
from surround_depth_train.data.rosbag.topic_map import TopicMap
from surround_depth_train.data.rosbag.messages import InputError
from surround_depth_train.geometry.transforms import transform_points

__all__ = ['evaluate_bag', 'write_report']


def evaluate_bag(bag: str | os.PathLike, model: str | os.PathLike, *, topic_map: TopicMap | None = None,
                 device: str = 'cpu', backend: str = 'torch', input_size: tuple[int, int] | None = None,
                 samples: int | None = None, pictures: int = 2, min_depth: float = 0.5, max_depth: float = 80.0,
                 max_lidar_gap: float = 0.15, progress: bool = True, allow_teacher: bool = False,
                 precision: str | None = None, bins_downsample: int | None = None
                 ) -> tuple[dict[str, Any], list[dict]]:
    """Evaluate ``model`` on ``bag`` (module docstring).

    ``precision`` and ``bins_downsample`` are the engine's (``bf16``, ``bins_downsample: 2``: the deployed
    configuration's accuracy against the bag's LiDAR); None takes an ``.onnx`` file's exported values (its
    sidecar) and ``fp32`` / 1 for a model file.

    Returns:
        ``(result, pictures)``: the result dict in the evaluation command's layout plus ``frames`` (one record per
        scored image) and ``bag``; and the data of the first ``pictures`` sets, for :func:`write_report`.
    """
    import torch
    from tqdm import tqdm

    from surround_depth_ros.engine import DepthEngine
    from surround_depth_ros.node_config import NodeConfig
    from surround_depth_ros.pipeline import CloudSettings, DepthPipeline
    from surround_depth_train.data.rosbag.frames import FrameDecoder
    from surround_depth_train.data.rosbag.sync import ApproximateTimeSync

    with BagSource(bag, topic_map) as source:
        source.require(lidar=True, ego_motion=True)
        m = source.map
        ctx = source.read_context()
        if not len(ctx.sweeps):
            source._refuse(f'the LiDAR topic {m.lidar} holds no readable sweep')
        rig = source.rig(ctx)
        if backend == 'onnxruntime' and (precision is None or bins_downsample is None):
            from surround_depth_train.export.sidecar import SidecarError, read_sidecar

            try:
                exported = read_sidecar(model, verify_hash=False)
            except (OSError, SidecarError):
                exported = {}  # the engine names what is wrong with the file
            precision = precision or str(exported.get('precision', 'fp32'))
            bins_downsample = bins_downsample or int(exported.get('bins_downsample', 1))
        engine = DepthEngine(model, device=device, backend=backend, input_size=input_size,
                             precision=precision or 'fp32', bins_downsample=bins_downsample or 1,
                             training_cameras=m.training_cameras, allow_teacher=allow_teacher)
        defaults = NodeConfig()
        pipeline = DepthPipeline(engine, rig, settings=CloudSettings(max_range=max_depth),
                                 base_frame=m.base_frame, odom_frame=m.odom_frame)
        decoder = FrameDecoder()
        sync = ApproximateTimeSync(source.cameras, slop=defaults.slop, queue_size=defaults.queue_size,
                                   timeout=defaults.timeout)
        masks = dict(zip(source.cameras, m.mask_files))
        scorer = DepthScorer(source.cameras, min_depth=min_depth, max_depth=max_depth, masks=masks,
                             odom_frame=m.odom_frame, base_frame=m.base_frame, max_lidar_gap=max_lidar_gap,
                             sweeps=ctx.sweeps, transforms=ctx.transforms)
        total = min(source.topics[source.image_topics[c][0]].count for c in source.cameras)
        sets = partial = 0
        bad_frames: dict[str, int] = {}
        first_problem = ''
        model_ms: list[float] = []
        picture_data: list[dict] = []
        bar = tqdm(total=total if samples is None else min(total, samples), desc='evaluate bag', unit='set',
                   disable=not progress)
        for camera_set in sync_sets(source, sync):
            if samples is not None and sets >= samples:
                break
            inputs = []
            for name, f in camera_set.frames.items():
                try:
                    inputs.append(decoder.decode(name, f.image, f.info, compressed=source.compressed(name)))
                except InputError as exc:  # as the node: the frame is skipped, counted and its problem named
                    bad_frames[name] = bad_frames.get(name, 0) + 1
                    first_problem = first_problem or str(exc)
            if not inputs:
                continue
            want_cloud = len(picture_data) < pictures
            motion = pipeline.motion_corrections(inputs, ctx.transforms) if want_cloud else None
            result = pipeline.run(inputs, want_cloud=want_cloud, motion=motion)
            sets += 1
            partial += int(not camera_set.complete)
            model_ms.append(result.timings_ms.get('model', float('nan')))
            scored = [scorer.score(pipeline.camera_for(out), out.stamp, out.depth) for out in result.cameras]
            if want_cloud and all(s is not None for s in scored):
                picture_data.append(_picture(inputs, result, scored, ctx, m.odom_frame, m.base_frame))
            bar.update(1)
        bar.close()
        if sets == 0:
            source._refuse('the synchroniser formed no camera set from the images (their stamps never come within '
                           f'the slop of {defaults.slop} s, or every image lacks its camera_info)')
        params = None  # an ONNX export holds folded constants, not the network's parameters: not counted
        torch_model = getattr(engine.backend, 'model', None)
        if isinstance(torch_model, torch.nn.Module):
            params = int(sum(p.numel() for p in torch_model.parameters()))
        h, w = engine.input_size
        result = {
            'model': {'path': str(model), 'name': engine.name, 'parameters': params, 'input_size': [h, w]},
            'dataset': {'name': f'bag {Path(bag).name}', 'split': 'all', 'samples': sets, 'image_size': [w, h],
                        'gt_resolution': ', '.join(sorted({f'{c.width} x {c.height}' for c in rig})) +
                                         ' (native, from the bag)',
                        'min_depth': min_depth, 'max_depth': max_depth, 'cameras': list(source.cameras)},
            'lidar': scorer.accumulator.summary(),
            'dense': None,
            'nonfinite': scorer.nonfinite_summary(),
            'consistency': None,
            'latency': {'median_ms': float(statistics.median(model_ms)), 'runs': len(model_ms),
                        'device': str(engine.device), 'batch': f'{len(source.cameras)} x {h} x {w}'},
            'frames': scorer.records,
            'bag': {'path': str(bag), 'sets': sets, 'partial_sets': partial, 'unscored': dict(scorer.unscored),
                    'sweeps': len(ctx.sweeps), 'ego_motion': ctx.ego_source,
                    'image_topics': {c: source.image_topics[c][0] for c in source.cameras},
                    'lidar_topic': m.lidar, 'max_lidar_gap': max_lidar_gap, 'bad_frames': bad_frames,
                    'first_bad_frame': first_problem,
                    'sync': {'slop': defaults.slop, 'queue_size': defaults.queue_size, 'timeout': defaults.timeout}},
        }
    return result, picture_data


def _picture(inputs, result, scored, ctx, odom_frame: str, base_frame: str) -> dict:
    """What one set's mosaic and bird's-eye view need (kept in memory: nothing is written before the end)."""
    stamp = result.stamp
    lidar_stamp = scored[0]['lidar_stamp']
    lidar = ctx.sweeps.before(lidar_stamp)[1]
    try:  # the sweep moved to the cloud's stamp, as the cloud is
        lidar = transform_points(ctx.transforms.motion_compensation(odom_frame, base_frame, lidar_stamp, stamp),
                                 lidar.astype(np.float64))
    except LookupError:
        pass
    return {'names': [o.name for o in result.cameras], 'rgb': [c.rgb.copy() for c in inputs],
            'pred': [o.depth for o in result.cameras], 'gt': [s['gt'] for s in scored],
            'gt_mask': [s['gt_mask'] for s in scored], 'cloud': result.cloud, 'lidar': lidar, 'stamp': stamp}


def write_report(out_dir: str | os.PathLike, result: dict[str, Any], pictures: list[dict],
                 baseline: dict | None = None, title_extra: str = '') -> Path:
    """``results.json``, ``results.md`` and ``pictures/`` in the evaluation command's layout; returns the .md."""
    import cv2

    from surround_depth_train.atomic import atomic_write
    from surround_depth_train.evaluation.report import depth_mosaic, render_markdown, save_bev, write_json
    from surround_depth_train.visualize import save_png

    out = Path(out_dir)
    (out / 'pictures').mkdir(parents=True, exist_ok=True)
    lo, hi = result['dataset']['min_depth'], result['dataset']['max_depth']
    paths = []
    for i, pic in enumerate(pictures):
        h, w = pic['pred'][0].shape  # the mosaic wants one size: every camera at the first one's
        fit = (lambda a, interp: a if a.shape[:2] == (h, w) else cv2.resize(a, (w, h), interpolation=interp))
        images = np.stack([fit(im, cv2.INTER_AREA).transpose(2, 0, 1) for im in pic['rgb']]).astype(np.float32) / 255
        pred = np.stack([fit(p, cv2.INTER_NEAREST) for p in pic['pred']])
        gt = np.stack([fit(g, cv2.INTER_NEAREST) for g in pic['gt']])
        gt_mask = np.stack([fit(m.astype(np.uint8), cv2.INTER_NEAREST) > 0 for m in pic['gt_mask']])
        picture = depth_mosaic(images, np.nan_to_num(pred, nan=0.0), pic['names'], lo, hi, gt=gt, gt_mask=gt_mask)
        save_png(out / 'pictures' / f'mosaic_{i:03d}.png', picture)
        paths.append(f'pictures/mosaic_{i:03d}.png')
        if pic['cloud'] is not None:
            save_bev(out / 'pictures' / f'bev_{i:03d}.png', pic['cloud'], pic['lidar'], pic['names'],
                     f'set at {pic["stamp"]:.3f} s: fused cloud (colours) vs LiDAR (grey)')
            paths.append(f'pictures/bev_{i:03d}.png')
    result = dict(result, pictures=paths)
    write_json(out / 'results.json', result)
    bag = result.get('bag') or {}
    notes = []
    if bag:
        unscored = ', '.join(f'{n} x {k}' for k, n in bag['unscored'].items()) or 'none'
        notes = ['', '## The bag', '',
                 f'`{bag["path"]}`: {bag["sets"]} camera sets formed by the node\'s synchroniser '
                 f'(slop {bag["sync"]["slop"]} s; {bag["partial_sets"]} partial), {bag["sweeps"]} LiDAR sweeps on '
                 f'`{bag["lidar_topic"]}`, ego motion from `{bag["ego_motion"]}`. Each image is scored against the '
                 f'newest sweep at most {bag["max_lidar_gap"]} s before it, moved to the image\'s stamp. Images not '
                 f'scored: {unscored}. Non-finite pixels are those the node publishes as NaN (outside the depth '
                 f'limits or the undistorted image).']
        if bag.get('bad_frames'):
            notes.append(f'Frames skipped as unreadable: {bag["bad_frames"]}; the first: {bag["first_bad_frame"]}')
    md = out / 'results.md'
    with atomic_write(md, 'w') as f:
        f.write(render_markdown(result, baseline) + title_extra + '\n'.join(notes) + '\n')
    return md
