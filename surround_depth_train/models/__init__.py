"""Depth models: the shared MetricBins head, students, the registry and the model file format."""
from surround_depth_train.models.bins import BinsOutput, MetricBins, resize_bins
from surround_depth_train.models.modelfile import (MODEL_FORMAT_VERSION, ModelInfo, load_model, read_model_file,
                                                   save_model)
from surround_depth_train.models.output import DepthOutput
from surround_depth_train.models.registry import create_model, is_teacher, list_models, register_model

__all__ = ['create_model', 'list_models', 'register_model', 'DepthOutput', 'MetricBins', 'BinsOutput',
           'resize_bins', 'save_model', 'load_model', 'read_model_file', 'MODEL_FORMAT_VERSION', 'ModelInfo',
           'is_teacher']
