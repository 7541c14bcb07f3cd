"""Cross-view consistency: ~0 for SurroundSim's exact dense depth with per-camera ego poses, growing with a
per-camera scale error."""
from __future__ import annotations

import numpy as np
import pytest

from surround_depth_train.data.surroundsim import SurroundSimDataset
from surround_depth_train.evaluation.consistency import (ConsistencyAccumulator, ConsistencySettings,
                                                         relative_disagreement, view_consistency)

# Exact depth agrees up to rendering precision: the tolerance on the rig's median relative difference.
EXACT_TOLERANCE = 1e-3


@pytest.fixture(scope='module')
def scene():
    ds = SurroundSimDataset('val', 1, (160, 96))
    s = ds[0]
    masks = (s['self_mask'][:, 0] & ~s['dynamic_mask'][:, 0]).numpy()
    return {'depth': s['depth_dense'][:, 0].numpy().astype(np.float64), 'K': s['K'].numpy(),
            'T': s['T_base_cam'].numpy(), 'poses': s['T_world_base_cams'].numpy(), 'masks': masks,
            'names': ds.camera_names, 'settings': ConsistencySettings(ds.min_depth, ds.max_depth)}


def _rig(scene, depth, poses='cams') -> dict:
    result = view_consistency(depth, scene['K'], scene['T'], scene['settings'],
                              scene['poses'] if poses == 'cams' else None, scene['masks'])
    acc = ConsistencyAccumulator(scene['names'])
    acc.add(result)
    return acc.summary()


def test_exact_dense_depth_is_consistent_within_the_tolerance(scene):
    summary = _rig(scene, scene['depth'])
    assert all(p is not None and p['count'] > 500 for p in summary['pairs'].values())
    assert summary['rig'] < EXACT_TOLERANCE
    assert all(p['mean'] < 5 * EXACT_TOLERANCE for p in summary['pairs'].values())


def test_consistency_grows_monotonically_with_a_per_camera_scale_error(scene):
    values = []
    for error in (0.0, 0.02, 0.05, 0.1, 0.2):
        scale = np.array([1.0 + error if i % 2 == 0 else 1.0 for i in range(6)])[:, None, None]
        values.append(_rig(scene, scene['depth'] * scale)['rig'])
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert 0.05 < values[3] < 0.12  # about the relative error |s - 1| / s, in the direction that is not occluded


def test_one_pose_for_all_cameras_shows_the_ego_motion_between_shutters(scene):
    with_poses = _rig(scene, scene['depth'])
    one_pose = _rig(scene, scene['depth'], poses=None)
    mean = lambda s: np.mean([p['mean'] for p in s['pairs'].values()])  # noqa: E731
    assert mean(one_pose) > mean(with_poses)


def test_a_nearer_surface_in_the_target_is_an_occlusion_and_a_farther_one_is_an_error():
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    src = np.full((48, 64), 10.0)
    settings = ConsistencySettings(0.5, 80.0)
    nearer, farther = np.full((48, 64), 5.0), np.full((48, 64), 20.0)
    assert relative_disagreement(src, nearer, K, K, np.eye(4), settings).size == 0
    r = relative_disagreement(src, farther, K, K, np.eye(4), settings)
    assert r.size == 48 * 64 and np.allclose(r, 0.5)
