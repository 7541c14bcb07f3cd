"""Pictures people would rather see than read: coloured depth, LiDAR overlays, six-camera mosaics.

Everything returns ``uint8`` RGB arrays ``[H, W, 3]``; :func:`save_png` writes them atomically.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from surround_depth_train.atomic import atomic_write

__all__ = ['colorize_depth', 'colorize_error', 'overlay_sparse_depth', 'depth_colour_bar', 'mosaic', 'label',
           'save_png']


def colorize_depth(depth: np.ndarray, min_depth: float = 0.5, max_depth: float = 80.0,
                   invalid_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Colour a depth map on a log scale with 'magma' (near = bright yellow, far = dark purple).

    ``t = 1 - log(d / min) / log(max / min)``: every doubling of depth moves the colour by the same step, so a
    street from 2 to 80 m uses the whole map. Pixels with non-finite or non-positive depth get ``invalid_color``.
    """
    import matplotlib

    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    t = np.zeros_like(depth)
    d = np.clip(depth[valid], min_depth, max_depth)
    t[valid] = 1.0 - np.log(d / min_depth) / np.log(max_depth / min_depth)
    rgb = matplotlib.colormaps['magma'](t)[..., :3]
    out = (rgb * 255).astype(np.uint8)
    out[~valid] = np.asarray(invalid_color, dtype=np.uint8)
    return out


def colorize_error(error: np.ndarray, max_error: float = 0.5, valid: np.ndarray | None = None,
                   invalid_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Colour a relative error map (e.g. ``|pred - gt| / gt``) with 'inferno' on ``[0, max_error]``: black = right,
    yellow = ``max_error`` or worse. Pixels outside ``valid`` (or not finite) get ``invalid_color``."""
    import matplotlib

    error = np.asarray(error, dtype=np.float32)
    ok = np.isfinite(error) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(error))
    t = np.zeros_like(error)
    t[ok] = np.clip(error[ok] / max_error, 0.0, 1.0)
    out = (matplotlib.colormaps['inferno'](t)[..., :3] * 255).astype(np.uint8)
    out[~ok] = np.asarray(invalid_color, dtype=np.uint8)
    return out


def depth_colour_bar(width: int, min_depth: float = 0.5, max_depth: float = 80.0, height: int = 34,
                     ticks: Sequence[float] = (1, 2, 5, 10, 20, 40, 80)) -> np.ndarray:
    """A horizontal colour bar of :func:`colorize_depth`'s scale with tick labels in metres (log scale, near left).

    Stack it under a mosaic (:func:`mosaic` accepts rows of any width; or ``np.vstack`` when widths match) so every
    depth picture says what its colours mean.
    """
    import cv2

    bar_h = max(8, height // 2)
    ramp = np.exp(np.linspace(np.log(min_depth), np.log(max_depth), max(2, width), dtype=np.float64))
    out = np.full((height, width, 3), 255, np.uint8)
    out[:bar_h] = colorize_depth(np.repeat(ramp[None].astype(np.float32), bar_h, axis=0), min_depth, max_depth)
    span = np.log(max_depth / min_depth)
    for t in [t for t in ticks if min_depth <= t <= max_depth]:
        x = int(round((np.log(t / min_depth) / span) * (width - 1)))
        cv2.line(out, (x, bar_h - 4), (x, bar_h + 2), (0, 0, 0), 1)
        text = f'{t:g} m'
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        x0 = int(np.clip(x - tw // 2, 0, max(0, width - tw)))
        cv2.putText(out, text, (x0, min(height - 2, bar_h + th + 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def overlay_sparse_depth(image: np.ndarray, sparse_depth: np.ndarray, min_depth: float = 0.5,
                         max_depth: float = 80.0, radius: int = 1) -> np.ndarray:
    """Draw LiDAR depth points (``> 0``) coloured by depth over an RGB image."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    colors = colorize_depth(sparse_depth, min_depth, max_depth)
    vs, us = np.nonzero(sparse_depth > 0)
    if radius <= 0:
        out[vs, us] = colors[vs, us]
        return out
    for v, u in zip(vs, us):
        cv2.circle(out, (int(u), int(v)), radius, tuple(int(c) for c in colors[v, u]), -1)
    return out


def label(image: np.ndarray, text: str, scale: float = 0.5) -> np.ndarray:
    """Write ``text`` in the top-left corner (white on a dark box)."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (w + 6, h + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def mosaic(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile images into a grid; each row may hold a different number of tiles; tiles are resized to the first."""
    import cv2

    first = rows[0][0]
    h, w = first.shape[:2]
    ncol = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + pad) - pad, ncol * (w + pad) - pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            tile = np.asarray(tile)
            if tile.ndim == 2:
                tile = np.repeat(tile[..., None], 3, axis=2)
            if tile.shape[:2] != (h, w):
                tile = cv2.resize(tile, (w, h), interpolation=cv2.INTER_AREA)
            canvas[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = tile[..., :3]
    return canvas


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, atomically."""
    import cv2

    ok, buf = cv2.imencode('.png', np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise OSError(f'could not encode {path} as PNG')
    with atomic_write(path, 'wb') as f:
        f.write(buf.tobytes())
