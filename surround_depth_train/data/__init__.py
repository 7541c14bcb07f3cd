"""Datasets in one sample schema (``schema.SurroundDataset``), augmentations, and SurroundSim (``data.surroundsim``)."""
from surround_depth_train.data.schema import (NUM_CAMERAS, OPTIONAL_KEYS, REQUIRED_KEYS, SampleError,
                                              SurroundDataset, collate_surround, validate_sample)
from surround_depth_train.data.transforms import AugmentConfig, color_jitter, flip_sample

__all__ = ['SurroundDataset', 'SampleError', 'collate_surround', 'validate_sample', 'REQUIRED_KEYS',
           'OPTIONAL_KEYS', 'NUM_CAMERAS', 'AugmentConfig', 'color_jitter', 'flip_sample']
