"""Deployment export: a model file -> an ONNX graph + its sidecar, and the ONNX Runtime model that runs them.

- ``onnx_export``: trace (whole-tensor bins path), self-check against PyTorch, write atomically;
- ``sidecar``: ``<model>.onnx.json`` (input size, normalisation, depth range, head, training rig, SHA-256);
- ``runtime``: :class:`OnnxDepthModel`, ONNX Runtime with inputs and outputs bound once per batch size;
- ``__main__``: ``python -m surround_depth_train.export``.

``runtime`` imports onnxruntime; it is not imported here, so exporting needs only onnx and onnxruntime for the
self-check, and the model code never needs either.
"""
from surround_depth_train.export.onnx_export import (DEFAULT_MAX_BATCH, MIN_OPSET, DeployGraph, ExportError,
                                                     ExportResult, export_onnx, whole_tensor_bins)
from surround_depth_train.export.sidecar import OUTPUT_NAMES, SidecarError, read_sidecar, sidecar_path, write_sidecar

__all__ = ['export_onnx', 'ExportError', 'ExportResult', 'DeployGraph', 'whole_tensor_bins',
           'MIN_OPSET', 'DEFAULT_MAX_BATCH', 'OUTPUT_NAMES', 'SidecarError', 'read_sidecar', 'write_sidecar',
           'sidecar_path']
