"""The images an int8 export calibrates on (and checks itself on), taken from a dataset and recorded for the sidecar.

Static int8 quantisation fixes each activation's range from a few representative inputs: camera sets of the
place the model will drive in. By default they come from SurroundSim's **train** split (the test split stays
untouched for the accuracy figures) rendered at the model's input size; ``data.*`` overrides pick another world or a
user's own recordings (``data.dataset=rosbag data.root=drive.mcap``). The first ``samples`` camera sets calibrate;
the next ``check_samples`` (never seen by the calibration) compare the int8 graph with the fp32 one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from surround_depth_train.config import ConfigError

__all__ = ['CalibrationSet', 'calibration_from_dataset', 'CALIBRATION_SPLITS']

CALIBRATION_SPLITS = ('train', 'val')  # never the test split: it gives the accuracy of the result


@dataclass
class CalibrationSet:
    """Camera sets as ``[cameras, 3, H, W]`` float32 RGB in ``[0, 1]``, and what they are (for the sidecar)."""

    batches: list[np.ndarray]                        # calibration
    check: list[np.ndarray]                          # held out: the int8 vs fp32 comparison
    record: dict[str, Any] = field(default_factory=dict)


def calibration_from_dataset(overrides: Sequence[str], *, input_size: tuple[int, int], split: str = 'train',
                             samples: int = 8, check_samples: int = 2) -> CalibrationSet:
    """Camera sets from the dataset that ``data.*`` ``overrides`` describe (default SurroundSim), at ``input_size``
    ``(height, width)`` (an ``data.image_size`` override is refused: the graph's input size is fixed).

    Raises:
        ConfigError: a bad override, split or count, or a dataset with fewer than ``samples + check_samples`` sets.
    """
    from surround_depth_train.config import load_config
    from surround_depth_train.data import schema as S
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.training.config import TrainConfig

    if split not in CALIBRATION_SPLITS:
        raise ConfigError(f'calibration split {split!r}: use one of {CALIBRATION_SPLITS} (the test split is kept '
                          f'for measuring the result)')
    if samples < 1 or check_samples < 1:
        raise ConfigError(f'calibrate on at least one camera set and check on at least one (got {samples} and '
                          f'{check_samples})')
    bad = [o for o in overrides if not o.startswith('data.') or o.startswith('data.image_size=')]
    if bad:
        raise ConfigError(f'calibration overrides {bad}: give data.* overrides only (data.image_size is the model\'s '
                          f'input size, fixed by the export)')
    height, width = int(input_size[0]), int(input_size[1])
    config = load_config(TrainConfig, None, list(overrides) + [f'data.image_size=[{width},{height}]'])
    need = samples + check_samples
    if config.data.dataset == 'surroundsim':
        counts = {'train': config.data.train_samples, 'val': config.data.val_samples}
        if (counts[split] or 0) < need:
            setattr(config.data, f'{split}_samples', need)
    dataset = build_dataset(config.data, split)
    if len(dataset) < need:
        raise ConfigError(f'the {config.data.dataset} {split} split has {len(dataset)} camera sets; the int8 export '
                          f'needs {need} ({samples} to calibrate, {check_samples} to check): lower '
                          f'--calibration-samples or give more data')
    sets, names = [], []
    for index in range(need):
        sample = dataset[index]
        images = sample[S.IMAGE].float().numpy()
        if tuple(images.shape[-2:]) != (height, width):
            raise ConfigError(f'the dataset gave images of {images.shape[-1]}x{images.shape[-2]}, the model takes '
                              f'{width}x{height}')
        sets.append(np.ascontiguousarray(images, dtype=np.float32))
        meta = sample.get(S.META, {})
        names.append(f'{meta.get("scene", "?")}/{meta.get("frame", index)}')
    data = config.data
    record = {'dataset': data.dataset, 'split': split, 'overrides': list(overrides),
              'world': getattr(data, 'world', None), 'root': data.root, 'image_size': [width, height],
              'cameras': int(sets[0].shape[0]), 'samples': samples, 'sets': names[:samples],
              'check_samples': check_samples, 'check_sets': names[samples:]}
    return CalibrationSet(batches=sets[:samples], check=sets[samples:], record=record)
