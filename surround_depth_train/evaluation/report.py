"""What an evaluation writes: the Table I Markdown, the JSON it comes from, depth mosaics and the bird's-eye view.

The table has the paper's columns (Table I):

    | Method | Params | Latency | AbsRel | SqRel | RMSE | RMSElog | d<1.25 | d<1.25^2 | d<1.25^3 | Delta_T |

one row for the baseline (when given), one for the model over the rig, then one per camera. ``Delta_T`` (%) comes
from :func:`surround_depth_train.metrics.delta_t` (positive = better than the baseline). Tables are built from the
result dicts alone, so results of separate runs can be put side by side with :func:`metrics_table`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from surround_depth_train.atomic import atomic_write
from surround_depth_train.metrics import METRIC_NAMES, delta_t
from surround_depth_train.visualize import colorize_depth, colorize_error, label, mosaic

__all__ = ['TABLE_COLUMNS', 'TableRow', 'metrics_table', 'render_markdown', 'depth_mosaic', 'save_bev',
           'write_json', 'baseline_metrics']

TABLE_COLUMNS = ('Method', 'Params', 'Latency', 'AbsRel ↓', 'SqRel ↓', 'RMSE ↓', 'RMSElog ↓', 'δ<1.25 ↑',
                 'δ<1.25² ↑', 'δ<1.25³ ↑', 'Δ_T (%) ↑')

TableRow = tuple[str, 'int | None', 'float | None', 'Mapping[str, float] | None', 'float | None']


def _fmt_params(n: int | None) -> str:
    return '-' if n is None else f'{n / 1e6:.2f} M'


def _fmt_latency(ms: float | None) -> str:
    return '-' if ms is None else f'{ms:.2f} ms'


def metrics_table(rows: Sequence[TableRow]) -> str:
    """Markdown table in Table I's layout; each row is ``(label, parameters, latency_ms, metrics, delta_t)``
    (``None`` prints ``-``; metrics ``None`` = no valid pixels)."""
    lines = ['| ' + ' | '.join(TABLE_COLUMNS) + ' |', '|' + '|'.join(['---'] + ['---:'] * (len(TABLE_COLUMNS) - 1))
             + '|']
    for name, params, latency, metrics, dt in rows:
        values = ['no valid pixels'] + [''] * 6 if metrics is None else [f'{metrics[k]:.3f}' for k in METRIC_NAMES]
        dt_text = '-' if dt is None else f'{dt:+.2f}'
        lines.append('| ' + ' | '.join([name, _fmt_params(params), _fmt_latency(latency), *values, dt_text]) + ' |')
    return '\n'.join(lines)


def baseline_metrics(baseline: Mapping[str, Any], gt: str = 'lidar') -> tuple[dict | None, dict]:
    """``(mean metrics, per-camera metrics)`` of a baseline: an evaluation JSON, or a training ``val_metrics.json``
    (``{'mean': ..., 'cameras': ...}``, LiDAR only)."""
    section = baseline.get(gt) if gt in baseline else (baseline if gt == 'lidar' and 'mean' in baseline else None)
    if not section:
        return None, {}
    return section.get('mean'), {k: v for k, v in (section.get('cameras') or {}).items() if v is not None}


def _section_rows(result: Mapping[str, Any], gt: str, baseline: Mapping[str, Any] | None) -> list[TableRow]:
    section = result[gt]
    model = result['model']
    base_mean, base_cams = baseline_metrics(baseline, gt) if baseline else (None, {})
    rows: list[TableRow] = []
    if baseline is not None and base_mean is not None:
        bmodel = baseline.get('model', {})
        rows.append((f'{bmodel.get("name", "baseline")} (baseline)', bmodel.get('parameters'),
                     (baseline.get('latency') or {}).get('median_ms'), base_mean, None))
    mean = section['mean']
    rows.append((f'**{model["name"]}** (rig)', model['parameters'], result['latency']['median_ms'], mean,
                 delta_t(mean, base_mean) if mean is not None and base_mean is not None else None))
    for cam, metrics in section['cameras'].items():
        base = base_cams.get(cam)
        rows.append((f'&nbsp;&nbsp;{cam}', None, None, metrics,
                     delta_t(metrics, base) if metrics is not None and base is not None else None))
    return rows


def render_markdown(result: Mapping[str, Any], baseline: Mapping[str, Any] | None = None) -> str:
    """The evaluation report: Table I for LiDAR GT (and dense GT, separately), consistency, non-finite counts."""
    ds, model, lat = result['dataset'], result['model'], result['latency']
    out = [f'# Evaluation of `{model["name"]}` on {ds["name"]} ({ds["split"]}, {ds["samples"]} camera sets)', '',
           f'Model file `{model["path"]}`; network input {ds["image_size"][0]} x {ds["image_size"][1]}; '
           f'GT at {ds["gt_resolution"]}; metrics per camera, then averaged over cameras '
           f'(depth range {ds["min_depth"]:g}-{ds["max_depth"]:g} m, no median scaling). Latency: median of '
           f'{lat["runs"]} forward passes of one six-camera set on {lat["device"]}, measured in this run.']
    if baseline is not None:
        out.append(f'Δ_T against `{result.get("baseline", {}).get("path", "the baseline")}`.')
    out += ['', '## LiDAR ground truth', '', metrics_table(_section_rows(result, 'lidar', baseline))]
    if result.get('dense') is not None:
        out += ['', '## Dense ground truth (synthetic)', '', metrics_table(_section_rows(result, 'dense', baseline))]
    cons = result.get('consistency')
    if cons is not None:
        out += ['', '## Cross-view consistency', '',
                f'Median relative depth difference `|z - d| / d` between adjacent cameras at corresponding pixels '
                f'(lower = more consistent; poses: {cons["poses"]}; moving objects, ego body, occlusions and depth '
                f'edges left out).', '', '| pair | median | mean | correspondences |', '|---|---:|---:|---:|']
        for name, value in cons['pairs'].items():
            out.append(f'| {name} | - | - | 0 |' if value is None else
                       f'| {name} | {value["median"]:.4f} | {value["mean"]:.4f} | {value["count"]} |')
        rig = cons['rig']
        out.append(f'| **rig** | {"-" if rig is None else f"{rig:.4f}"} | | |')
        base_rig = ((baseline or {}).get('consistency') or {}).get('rig')
        if base_rig is not None:
            name = (baseline.get('model') or {}).get('name', 'the baseline')
            out += ['', f'The baseline `{name}` has a rig median of {base_rig:.4f}.']
        if cons.get('dense_reference') is not None:
            out += ['', f'The same measure on the dense ground truth (the floor set by the geometry): '
                        f'{cons["dense_reference"]:.2g}.']
    nf = result['nonfinite']
    out += ['', '## Non-finite predictions', '']
    if nf['pixels_total'] == 0:
        out.append('None: every predicted depth was finite.')
    else:
        out.append(f'**{nf["pixels_total"]} predicted pixels were not finite** ({nf["images_total"]} images); '
                   f'{nf["gt_pixels_total"]} of them had LiDAR ground truth and are not in the metrics above.')
        out += ['', '| camera | non-finite pixels | images | with GT |', '|---|---:|---:|---:|']
        for cam in nf['pixels']:
            out.append(f'| {cam} | {nf["pixels"][cam]} | {nf["images"][cam]} | {nf["gt_pixels"][cam]} |')
    pictures = result.get('pictures') or []
    if pictures:
        out += ['', '## Pictures', '']
        out += [f'![{Path(p).stem}]({p})' for p in pictures]
    return '\n'.join(out) + '\n'


def _rgb(image: np.ndarray) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] -> ``[H, W, 3]`` uint8."""
    return (np.clip(np.asarray(image).transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def depth_mosaic(images: np.ndarray, pred: np.ndarray, names: Sequence[str], min_depth: float, max_depth: float,
                 gt: np.ndarray | None = None, gt_mask: np.ndarray | None = None,
                 dense: np.ndarray | None = None, dense_mask: np.ndarray | None = None,
                 max_error: float = 0.5) -> np.ndarray:
    """Six-camera mosaic: a row of images, one of predictions, one of the relative error ``|p - g| / g`` against
    LiDAR (each point dilated to 3 x 3 so it shows) and, with dense GT, one of dense GT and one of its error.

    Args:
        images: ``[N, 3, H, W]`` in [0, 1]; ``pred``: ``[N, H, W]``; ``gt``/``dense``: ``[N, H, W]`` at the same
            resolution with their masks.
    """
    import cv2

    rows = [[label(_rgb(im), n) for im, n in zip(images, names)],
            [label(colorize_depth(p, min_depth, max_depth), 'prediction') for p in pred]]
    if gt is not None:
        row = []
        for p, g, m in zip(pred, gt, gt_mask):
            err = np.where(m, np.abs(p - g) / np.maximum(g, 1e-6), np.nan)
            valid = m & np.isfinite(err)
            # dilate the sparse points: the largest error in each 3 x 3 neighbourhood, where one exists
            err_d = cv2.dilate(np.nan_to_num(err, nan=0.0).astype(np.float32), np.ones((3, 3), np.uint8))
            valid_d = cv2.dilate(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            row.append(label(colorize_error(err_d, max_error, valid_d), f'LiDAR error 0-{max_error:g}'))
        rows.append(row)
    if dense is not None:
        rows.append([label(colorize_depth(np.where(m, d, 0), min_depth, max_depth), 'dense GT')
                     for d, m in zip(dense, dense_mask)])
        rows.append([label(colorize_error(np.abs(p - d) / np.maximum(d, 1e-6), max_error, m),
                           f'dense error 0-{max_error:g}') for p, d, m in zip(pred, dense, dense_mask)])
    return mosaic(rows)


def save_bev(path: str | os.PathLike, cloud: Mapping[str, np.ndarray], lidar: np.ndarray, names: Sequence[str],
             title: str, extent: float = 60.0, height_band: tuple[float, float] = (0.3, 3.0)) -> None:
    """Bird's-eye view of the fused predicted cloud (coloured by camera) over the LiDAR sweep (grey), both in
    base_link at the LiDAR stamp (x forward to the right of the page, y left upwards), within ``extent`` metres.

    Only points with ``z`` inside ``height_band`` (metres above base_link) are drawn: the ground would cover the
    page, and the band keeps what a BEV is read for (walls, cars, poles), in both clouds alike.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def keep(p: np.ndarray) -> np.ndarray:
        return (np.abs(p[:, 0]) < extent) & (np.abs(p[:, 1]) < extent) & (p[:, 2] > height_band[0]) & \
            (p[:, 2] < height_band[1])

    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    lid = np.asarray(lidar)[:, :3]
    lid = lid[keep(lid)]
    ax.scatter(lid[:, 0], lid[:, 1], s=1.0, c='0.55', label='LiDAR', zorder=1)
    pts = np.asarray(cloud['points'])
    near = keep(pts)
    for i, name in enumerate(names):
        sel = near & (cloud['camera'] == i)
        ax.scatter(pts[sel, 0], pts[sel, 1], s=0.4, label=f'{name} (prediction)', alpha=0.7, zorder=2)
    ax.set_aspect('equal')
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_xlabel('x forward [m]')
    ax.set_ylabel('y left [m]')
    ax.set_title(f'{title}\npoints {height_band[0]:g}-{height_band[1]:g} m above base_link', fontsize=9)
    ax.legend(markerscale=10, loc='upper right', fontsize=7)
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')
    plt.close(fig)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically, with plain types only (numpy scalars converted)."""
    def plain(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f'{type(o).__name__} is not JSON serialisable')

    with atomic_write(path, 'w') as f:
        json.dump(obj, f, indent=2, default=plain)
