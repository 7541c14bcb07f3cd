"""The standard depth metrics, written once and used by training validation, evaluation and the bag evaluator.

For one camera image, on the valid mask ``min_depth < gt < max_depth`` (and an optional extra mask), with the
prediction clamped to ``[min_depth, max_depth]`` (and optionally median-scaled first, ``p *= median(gt)/median(p)``):

    abs_rel  = mean(|gt - p| / gt)
    sq_rel   = mean((gt - p)^2 / gt)
    rmse     = sqrt(mean((gt - p)^2))
    rmse_log = sqrt(mean((log gt - log p)^2))
    a_k      = mean(max(gt / p, p / gt) < 1.25^k),  k = 1, 2, 3

Over a dataset (SurroundDepth protocol): each metric is averaged over the samples of each camera, then over the
cameras. A camera image without valid pixels yields ``None`` ("no valid pixels") and is left out of the averages,
never NaN.

``Delta_T`` (%) against a baseline: the mean over the seven metrics of the relative change, with the sign flipped
for the lower-is-better ones, so positive = better than the baseline.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ['METRIC_NAMES', 'LOWER_IS_BETTER', 'compute_depth_metrics', 'MetricsAccumulator', 'delta_t',
           'format_metrics']

METRIC_NAMES = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3')
LOWER_IS_BETTER = {'abs_rel': True, 'sq_rel': True, 'rmse': True, 'rmse_log': True,
                   'a1': False, 'a2': False, 'a3': False}


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def compute_depth_metrics(pred: Any, gt: Any, min_depth: float, max_depth: float, mask: Any = None,
                          median_scaling: bool = False) -> dict[str, float] | None:
    """The seven metrics for one image; ``pred`` and ``gt`` of the same shape (numpy or torch).

    Returns:
        ``{'abs_rel': ..., ..., 'a3': ..., 'count': n_valid}``, or ``None`` when no pixel is valid.
    """
    pred, gt = _to_numpy(pred), _to_numpy(gt)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} differs from ground truth shape {gt.shape}; '
                         f'resize the prediction to the ground-truth resolution first')
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred)
    if mask is not None:
        valid &= _to_numpy(mask).astype(bool).reshape(valid.shape)
    n = int(valid.sum())
    if n == 0:
        return None
    g, p = gt[valid], pred[valid]
    if median_scaling:
        med_p = np.median(p)
        if med_p > 0:
            p = p * (np.median(g) / med_p)
    p = np.clip(p, min_depth, max_depth)
    ratio = np.maximum(g / p, p / g)
    diff = g - p
    return {
        'abs_rel': float(np.mean(np.abs(diff) / g)),
        'sq_rel': float(np.mean(diff ** 2 / g)),
        'rmse': float(np.sqrt(np.mean(diff ** 2))),
        'rmse_log': float(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))),
        'a1': float(np.mean(ratio < 1.25)),
        'a2': float(np.mean(ratio < 1.25 ** 2)),
        'a3': float(np.mean(ratio < 1.25 ** 3)),
        'count': n,
    }


class MetricsAccumulator:
    """Per-camera running means of per-image metrics; ``summary()`` averages over cameras.

    Example:
        acc = MetricsAccumulator(['front', 'back'])
        acc.add('front', compute_depth_metrics(p, g, 0.5, 80))
        acc.summary()['mean']['abs_rel']
    """

    def __init__(self, camera_names: Sequence[str] = ()):
        self.camera_names = list(camera_names)
        self._sums: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(METRIC_NAMES, 0.0))
        self._counts: dict[str, int] = defaultdict(int)
        self._empty: dict[str, int] = defaultdict(int)

    def add(self, camera: str, metrics: Mapping[str, float] | None) -> None:
        """Add one image's metrics (``None`` = no valid pixels: counted, not averaged)."""
        if camera not in self.camera_names:
            self.camera_names.append(camera)
        if metrics is None:
            self._empty[camera] += 1
            return
        for k in METRIC_NAMES:
            self._sums[camera][k] += float(metrics[k])
        self._counts[camera] += 1

    def add_batch(self, preds: Any, gts: Any, min_depth: float, max_depth: float, masks: Any = None,
                  median_scaling: bool = False, camera_names: Sequence[str] | None = None) -> None:
        """Add ``[B, N, (1,) H, W]`` predictions and GT (camera axis 1, in ``camera_names`` order)."""
        preds, gts = _to_numpy(preds), _to_numpy(gts)
        masks = None if masks is None else _to_numpy(masks)
        names = list(camera_names or self.camera_names)
        if len(names) != preds.shape[1]:
            raise ValueError(f'{preds.shape[1]} cameras in the batch but {len(names)} camera names')
        for b in range(preds.shape[0]):
            for i, name in enumerate(names):
                self.add(name, compute_depth_metrics(preds[b, i], gts[b, i], min_depth, max_depth,
                                                     None if masks is None else masks[b, i], median_scaling))

    def per_camera(self) -> dict[str, dict[str, float] | None]:
        out: dict[str, dict[str, float] | None] = {}
        for cam in self.camera_names:
            n = self._counts.get(cam, 0)
            out[cam] = None if n == 0 else {k: v / n for k, v in self._sums[cam].items()} | {'images': n}
        return out

    def summary(self) -> dict[str, Any]:
        """``{'mean': {metric: value} or None, 'cameras': {name: {...} or None}, 'empty': {name: count}}``."""
        cams = self.per_camera()
        valid = [m for m in cams.values() if m is not None]
        mean = None if not valid else {k: float(np.mean([m[k] for m in valid])) for k in METRIC_NAMES}
        return {'mean': mean, 'cameras': cams, 'empty': dict(self._empty)}


def delta_t(result: Mapping[str, float], baseline: Mapping[str, float]) -> float:
    """Relative improvement ``Delta_T`` in % over the seven metrics (positive = better than ``baseline``).

    A metric whose baseline value is 0 has no relative change and is left out of the mean.
    """
    changes = []
    for k in METRIC_NAMES:
        if baseline[k] == 0:
            continue
        rel = (result[k] - baseline[k]) / baseline[k]
        changes.append(-rel if LOWER_IS_BETTER[k] else rel)
    if not changes:
        raise ValueError('every baseline metric is 0: Delta_T is undefined')
    return float(100.0 * np.mean(changes))


def format_metrics(metrics: Mapping[str, float] | None) -> str:
    """One line: ``abs_rel 0.123 | sq_rel ... | a3 0.987`` (or ``no valid pixels``)."""
    if metrics is None:
        return 'no valid pixels'
    return ' | '.join(f'{k} {metrics[k]:.3f}' for k in METRIC_NAMES)
