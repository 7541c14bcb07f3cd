"""The end-to-end demo on built-in data: ``python -m surround_depth_train.demo --out outputs/demo``.

Stage ``geometry`` (always runs, no model needed): a roof LiDAR sweep is ray-cast against a simple analytic street
(ground plane and box-shaped buildings and cars) around a nuScenes-like six-camera rig; the sweep is projected into
every camera with the z-buffer and lifted back to one fused cloud. It writes ``lidar_depth_mosaic.png`` (sparse
depth per camera, cyclic order) and ``fused_cloud_bev.png`` (bird's-eye view of the fused cloud coloured by
camera), and prints how many returns each camera received.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

import surround_depth_train
from surround_depth_train.geometry import rig_depth_to_cloud, rig_points_to_depth, synthetic_surround_rig
from surround_depth_train.visualize import label, mosaic, overlay_sparse_depth, save_png

__all__ = ['main', 'spinning_lidar_rays', 'raycast_street']


def spinning_lidar_rays(beams: int = 32, azimuths: int = 1024, min_elev_deg: float = -30.0,
                        max_elev_deg: float = 10.0) -> np.ndarray:
    """Unit ray directions ``[beams * azimuths, 3]`` of a spinning LiDAR (base_link axes)."""
    elev = np.deg2rad(np.linspace(min_elev_deg, max_elev_deg, beams))
    azim = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)
    e, a = np.meshgrid(elev, azim, indexing='ij')
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)


def raycast_street(origin: np.ndarray, rays: np.ndarray, boxes: np.ndarray, max_range: float = 80.0) -> np.ndarray:
    """Nearest hit of each ray with the ground plane ``z = 0`` and axis-aligned ``boxes [B, 2, 3]`` (min, max).

    Returns the hit points ``[M, 3]`` (rays without a hit within ``max_range`` are dropped).
    """
    with np.errstate(divide='ignore', invalid='ignore'):
        t_ground = np.where(rays[:, 2] < 0, -origin[2] / rays[:, 2], np.inf)
        inv = 1.0 / rays
        t0 = (boxes[None, :, 0, :] - origin) * inv[:, None, :]
        t1 = (boxes[None, :, 1, :] - origin) * inv[:, None, :]
    t_near = np.nanmax(np.minimum(t0, t1), axis=-1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=-1)
    hit = (t_near <= t_far) & (t_far > 0)
    t_box = np.where(hit, np.where(t_near > 0, t_near, np.inf), np.inf).min(axis=1)
    t = np.minimum(t_ground, t_box)
    keep = np.isfinite(t) & (t <= max_range)
    return origin + rays[keep] * t[keep, None]


def _street_boxes(rng: np.random.Generator) -> np.ndarray:
    boxes = []
    for side in (-1, 1):  # buildings along both sides of a 14 m wide street
        x = -60.0
        while x < 60.0:
            w = rng.uniform(8, 20)
            setback = rng.uniform(9, 14)
            boxes.append([[x, side * setback if side > 0 else -setback - 10, 0],
                          [x + w, setback + 10 if side > 0 else -setback, rng.uniform(6, 25)]])
            x += w + rng.uniform(1, 6)
    for _ in range(8):  # parked cars
        x, side = rng.uniform(-40, 40), rng.choice([-1, 1])
        y = side * rng.uniform(4.5, 5.5)
        boxes.append([[x - 2.2, y - 0.9, 0], [x + 2.2, y + 0.9, 1.5]])
    return np.asarray(boxes, dtype=np.float64)


def run_geometry_stage(out: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rig = synthetic_surround_rig(640, 384)
    origin = np.array([0.9, 0.0, 1.9])
    points = raycast_street(origin, spinning_lidar_rays(), _street_boxes(rng))
    depths = rig_points_to_depth(points, rig, min_depth=0.5, max_depth=80.0)
    counts = {cam.name: int(np.count_nonzero(d)) for cam, d in zip(rig, depths)}
    tiles = [label(overlay_sparse_depth(np.full((cam.height, cam.width, 3), 40, np.uint8), d, 0.5, 80.0, radius=2),
                   f'{cam.name}: {counts[cam.name]} returns')
             for cam, d in zip(rig, depths)]
    save_png(out / 'lidar_depth_mosaic.png', mosaic([tiles[:3], tiles[3:]]))
    cloud = rig_depth_to_cloud(depths, rig)
    _plot_bev(cloud, rig.names, out / 'fused_cloud_bev.png')
    rig.to_yaml(out / 'rig.yaml')
    return {'lidar_points': len(points), 'returns_per_camera': counts, 'fused_points': len(cloud['points'])}


def _plot_bev(cloud: dict, names: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    for i, name in enumerate(names):
        sel = cloud['camera'] == i
        ax.scatter(cloud['points'][sel, 0], cloud['points'][sel, 1], s=0.5, label=name)
    ax.set_aspect('equal')
    ax.set_xlim(-60, 60)
    ax.set_ylim(-60, 60)
    ax.set_xlabel('x forward [m]')
    ax.set_ylabel('y left [m]')
    ax.legend(markerscale=10, loc='upper right', fontsize=8)
    ax.set_title('fused cloud from the six cameras (base_link)')
    tmp = path.with_suffix('.tmp.png')
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='surround_depth_demo',
        description='Run surround-depth end to end on built-in synthetic data and write pictures and numbers.',
        epilog=f'surround_depth_train {surround_depth_train.__version__} from '
               f'{Path(surround_depth_train.__file__).parent}')
    parser.add_argument('--out', type=Path, default=Path('outputs/demo'), help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = run_geometry_stage(args.out, args.seed)
    print(f'[geometry] {summary["lidar_points"]} LiDAR returns -> per camera {summary["returns_per_camera"]}; '
          f'fused cloud {summary["fused_points"]} points')
    print(f'[geometry] wrote {args.out / "lidar_depth_mosaic.png"} and {args.out / "fused_cloud_bev.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
