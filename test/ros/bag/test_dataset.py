"""data.dataset=rosbag: a converted SurroundSim bag read back as the sample schema equals the SurroundSim dataset it
came from (images, K, extrinsics, LiDAR depth), and an evaluation on it gives the dataset's numbers."""
from __future__ import annotations

import pytest
import torch

from surround_depth_train.config import ConfigError
from surround_depth_train.data.schema import validate_sample
from surround_depth_train.evaluation.runner import evaluate_model
from surround_depth_train.metrics import METRIC_NAMES
from surround_depth_train.models.modelfile import load_model
from surround_depth_train.training.builders import build_dataset
from surround_depth_train.training.config import DataConfig


def _rosbag(sim, **kwargs) -> DataConfig:
    return DataConfig(dataset='rosbag', root=str(sim['bag']), image_size=(96, 64), mask_files=list(sim['masks']),
                      **kwargs)


def test_a_bag_read_as_data_equals_the_surroundsim_samples_it_was_converted_from(sim):
    ds = build_dataset(_rosbag(sim, native_depth=False), 'val')
    ref = sim['dataset']
    assert len(ds) == len(ref) == 3 and ds.camera_names == ref.camera_names and ds.skipped == {}
    for i in range(len(ds)):
        got, want = ds[i], ref[i]
        validate_sample(got)
        assert torch.equal(got['image'], want['image'])
        torch.testing.assert_close(got['K'], want['K'])
        torch.testing.assert_close(got['T_base_cam'], want['T_base_cam'], atol=1e-5, rtol=0)
        torch.testing.assert_close(got['stamps'], want['stamps'])
        assert torch.equal(got['self_mask'], want['self_mask'])
        both = (got['depth'] > 0) & (want['depth'] > 0)
        assert both.sum() > 0.99 * (want['depth'] > 0).sum()
        torch.testing.assert_close(got['depth'][both], want['depth'][both], atol=1e-3, rtol=1e-4)
        assert got['meta']['scene'] == 'sim'


def test_evaluating_on_the_bag_as_data_gives_the_dataset_evaluation(sim):
    model, _ = load_model(sim['model'])
    got = evaluate_model(model, build_dataset(_rosbag(sim), 'val'), pictures=0, latency_runs=1, consistency=False,
                         progress=False)
    want = evaluate_model(model, sim['dataset'], pictures=0, latency_runs=1, consistency=False, progress=False)
    for k in METRIC_NAMES:
        assert got['lidar']['mean'][k] == pytest.approx(want['lidar']['mean'][k], rel=1e-3, abs=1e-6), k
    assert got['gt_resolution'] == '96 x 64 (native)'


def test_a_rosbag_dataset_that_names_a_missing_bag_is_refused_with_what_the_folder_holds(sim):
    with pytest.raises(ConfigError, match=r"bags \['nope'\] are not in .* it holds \['sim'\]"):
        build_dataset(DataConfig(dataset='rosbag', root=str(sim['bag'].parent), val_scenes=['nope']), 'val')
    with pytest.raises(ConfigError, match='does not exist'):
        build_dataset(DataConfig(dataset='rosbag', root=str(sim['bag'] / 'missing')), 'val')
