import math

import numpy as np
import pytest

from surround_depth_train.metrics import MetricsAccumulator, compute_depth_metrics, delta_t


def test_metrics_match_hand_computed_values():
    gt = np.array([2.0, 4.0, 10.0, 0.0])  # the 0 is invalid
    pred = np.array([1.0, 5.0, 10.0, 3.0])
    m = compute_depth_metrics(pred, gt, min_depth=0.1, max_depth=80)
    assert m['count'] == 3
    assert m['abs_rel'] == pytest.approx((0.5 + 0.25 + 0.0) / 3)
    assert m['sq_rel'] == pytest.approx((1 / 2 + 1 / 4 + 0) / 3)
    assert m['rmse'] == pytest.approx(math.sqrt((1 + 1 + 0) / 3))
    assert m['rmse_log'] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(1.25) ** 2) / 3))
    # ratios max(gt/p, p/gt) = 2.0, 1.25, 1.0; thresholds 1.25, 1.5625, 1.953: 2.0 passes none
    assert m['a1'] == pytest.approx(1 / 3)
    assert m['a2'] == pytest.approx(2 / 3)
    assert m['a3'] == pytest.approx(2 / 3)


def test_prediction_is_clamped_to_the_evaluation_range():
    m = compute_depth_metrics(np.array([200.0]), np.array([50.0]), 0.1, 80.0)
    assert m['abs_rel'] == pytest.approx(30 / 50)


def test_ground_truth_outside_the_range_is_ignored():
    m = compute_depth_metrics(np.array([1.0, 1.0]), np.array([1.0, 100.0]), 0.1, 80.0)
    assert m['count'] == 1 and m['abs_rel'] == 0.0


def test_median_scaling_removes_a_global_scale():
    gt = np.array([2.0, 4.0, 8.0])
    m = compute_depth_metrics(gt * 3.0, gt, 0.1, 80.0, median_scaling=True)
    assert m['abs_rel'] == pytest.approx(0.0, abs=1e-12)


def test_empty_mask_gives_no_valid_pixels_instead_of_nan():
    assert compute_depth_metrics(np.ones(4), np.zeros(4), 0.1, 80.0) is None
    assert compute_depth_metrics(np.ones(4), np.ones(4), 0.1, 80.0, mask=np.zeros(4, bool)) is None


def test_accumulator_averages_per_camera_then_over_cameras_and_skips_empty_cameras():
    acc = MetricsAccumulator(['front', 'back', 'left'])
    acc.add('front', compute_depth_metrics(np.array([1.0]), np.array([2.0]), 0.1, 80))   # abs_rel 0.5
    acc.add('front', compute_depth_metrics(np.array([2.0]), np.array([2.0]), 0.1, 80))   # 0.0
    acc.add('back', compute_depth_metrics(np.array([3.0]), np.array([2.0]), 0.1, 80))    # 0.5
    acc.add('left', None)
    s = acc.summary()
    assert s['cameras']['front']['abs_rel'] == pytest.approx(0.25)
    assert s['cameras']['left'] is None and s['empty'] == {'left': 1}
    assert s['mean']['abs_rel'] == pytest.approx((0.25 + 0.5) / 2)


def test_accumulator_takes_batches_with_the_camera_axis_second():
    torch = pytest.importorskip('torch')
    gt = torch.full((2, 3, 1, 4, 4), 10.0)
    pred = gt.clone()
    pred[:, 1] = 12.0
    acc = MetricsAccumulator(['a', 'b', 'c'])
    acc.add_batch(pred, gt, 0.1, 80)
    cams = acc.summary()['cameras']
    assert cams['a']['abs_rel'] == 0 and cams['b']['abs_rel'] == pytest.approx(0.2)
    assert cams['b']['images'] == 2


def test_delta_t_is_positive_when_better_and_matches_the_paper():
    # Table II nuScenes: Monodepth2 vs Monodepth2 + MB + Ours, reported +13.42
    base = dict(abs_rel=0.182, sq_rel=1.593, rmse=5.961, rmse_log=0.295, a1=0.744, a2=0.868, a3=0.926)
    ours = dict(abs_rel=0.158, sq_rel=1.135, rmse=4.915, rmse_log=0.243, a1=0.805, a2=0.914, a3=0.957)
    assert delta_t(ours, base) == pytest.approx(13.42, abs=0.01)
    assert delta_t(base, base) == 0.0


def test_delta_t_leaves_out_metrics_whose_baseline_is_zero():
    base = dict(abs_rel=0.2, sq_rel=1.0, rmse=5.0, rmse_log=0.3, a1=0.0, a2=0.5, a3=0.5)
    better = dict(base, abs_rel=0.1, a1=0.3)
    assert delta_t(better, base) == pytest.approx(100 * 0.5 / 6)
