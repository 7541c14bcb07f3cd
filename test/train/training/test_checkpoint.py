"""Resume bookkeeping: which config keys must match for an exact resume."""
from surround_depth_train.config import to_mapping
from surround_depth_train.training.checkpoint import config_differences
from surround_depth_train.training.config import TrainConfig


def config(**changes) -> dict:
    cfg = to_mapping(TrainConfig())
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split('__')
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


def test_keys_that_change_the_trajectory_are_listed_with_both_values():
    diffs = config_differences(config(), config(seed=3, batch_size=4, epochs=9, optim__lr=1.0, loss__ckd=0.5,
                                                model__name='hrdepth_mb', data__train_samples=5))
    assert diffs == ['batch_size: 2 -> 4', 'data.train_samples: 64 -> 5', 'epochs: 5 -> 9', 'loss.ckd: 0.1 -> 0.5',
                     "model.name: 'monodepth2_mb' -> 'hrdepth_mb'", 'optim.lr: 0.000161 -> 1.0', 'seed: 0 -> 3']


def test_outputs_logging_workers_caches_and_device_are_exempt():
    changed = config(out_dir='elsewhere', stop_after_steps=7, log_every=1, val_every=2, checkpoint_every=3,
                     tensorboard=False, device='cpu', data__num_workers=4, data__cache_dir='/tmp/x',
                     teacher__cache_dir='/tmp/y')
    assert config_differences(config(), changed) == []


def test_nested_model_kwargs_are_compared_key_by_key():
    diffs = config_differences(config(model__kwargs={'bins': {'n_bins': 32}}), config())
    assert diffs == ["model.kwargs.bins.n_bins: 32 -> '<absent>'"]
