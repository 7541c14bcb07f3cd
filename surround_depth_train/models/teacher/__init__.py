"""Depth Anything v1 metric teacher: DINOv2 ViT (``dinov2``), DPT decoder (``dpt``), the model with the shared
MetricBins head (``depth_anything``), checkpoint loaders (``checkpoints``) and the registered variants
(``variants``). ``manifest_vitl_metric.json`` records the official ViT-L metric checkpoint's key names and shapes.
"""
from surround_depth_train.models.teacher.checkpoints import (CheckpointError, CheckpointInfo, LoadReport,
                                                             detect_architecture, load_depth_anything,
                                                             read_checkpoint)
from surround_depth_train.models.teacher.depth_anything import ENCODERS, DepthAnythingMetric, EncoderSpec
from surround_depth_train.models.teacher.variants import (depth_anything_tiny_metric, depth_anything_vitb_metric,
                                                          depth_anything_vitl_metric, depth_anything_vits_metric)

__all__ = ['DepthAnythingMetric', 'EncoderSpec', 'ENCODERS', 'CheckpointError', 'CheckpointInfo', 'LoadReport',
           'detect_architecture', 'load_depth_anything', 'read_checkpoint', 'depth_anything_vits_metric',
           'depth_anything_vitb_metric', 'depth_anything_vitl_metric', 'depth_anything_tiny_metric']
