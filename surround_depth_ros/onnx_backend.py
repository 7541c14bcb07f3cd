"""The engine's ONNX Runtime backend (``backend: onnxruntime``), no rclpy.

It runs an ``.onnx`` file written by ``python -m surround_depth_train.export`` through
:class:`~surround_depth_train.export.runtime.OnnxDepthModel` (sidecar checks, execution providers, inputs and outputs
bound once per batch size) and adds the node's policy: a teacher is refused unless ``allow_teacher``. The interface
is the torch backend's (``surround_depth_ros.engine``): ``forward(images [B, 3, H, W] float RGB in [0, 1] on the CPU,
confidence) -> (depth [B, 1, H, W], confidence [B, 1, H, W] or None)``, fresh tensors each call, and ``info``.

Execution providers: ``CPUExecutionProvider`` is tested here. ``CUDAExecutionProvider`` and
``TensorrtExecutionProvider`` are used when requested and present in the installed onnxruntime (onnxruntime-gpu);
that path is untested here (no GPU build). A requested provider that is missing raises :class:`OnnxBackendError`,
or, with ``allow_fallback``, warns and runs on the CPU.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from surround_depth_train.export.runtime import OnnxDepthModel, OnnxRuntimeError
from surround_depth_train.models.modelfile import ModelInfo

__all__ = ['OnnxBackend', 'OnnxBackendError']


class OnnxBackendError(OnnxRuntimeError):
    """The ONNX backend cannot run this file as configured; the message says what to change."""


class OnnxBackend:
    """ONNX Runtime backend of :class:`~surround_depth_ros.engine.DepthEngine`.

    Args:
        path: the exported ``.onnx`` (its sidecar ``.onnx.json`` beside it).
        providers: execution providers in order of preference.
        allow_fallback: a missing provider becomes a warning and the CPU instead of an error.
        allow_teacher: run a teacher export (refused otherwise: tens of times slower than a student).
        threads: ONNX Runtime intra-op threads (None: its default, one per physical core).
        optimization_level: ``disable``, ``basic``, ``extended``, ``layout`` or ``all``.

    Attributes:
        info: :class:`~surround_depth_train.models.modelfile.ModelInfo` of the exported model: ``name``,
            ``input_size`` ``(h, w)``, ``depth_range``, ``normalisation``, ``training_rig``, ``is_teacher``,
            ``has_confidence`` (the graph has the confidence output), ``fully_convolutional=False``.
        providers: the providers the session runs on.
        precision: what the graph computes in: ``fp32``, or ``int8`` for ``export --int8`` (from the sidecar).
        bins_downsample: the bins head's resolution factor baked in by ``export --bins-downsample`` (sidecar).
    """

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[str] = ('CPUExecutionProvider',),
                 allow_fallback: bool = False, allow_teacher: bool = False, threads: int | None = None,
                 optimization_level: str = 'all'):
        try:
            self.model = OnnxDepthModel(path, providers=providers, allow_fallback=allow_fallback, threads=threads,
                                        optimization_level=optimization_level)
        except OnnxRuntimeError as exc:
            raise OnnxBackendError(str(exc)) from None
        self.info: ModelInfo = self.model.info
        if self.info.is_teacher and not allow_teacher:
            raise OnnxBackendError(f'{Path(path)} holds the teacher {self.info.name}, tens of times slower than a '
                                   f'student; deploy a distilled student, or set allow_teacher: true to run it anyway')
        self.providers = self.model.providers
        self.precision: str = self.model.precision  # the exported precision: fp32, or int8 (`export --int8`)
        self.bins_downsample: int = self.model.bins_downsample  # `export --bins-downsample`

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input_size

    def forward(self, images: torch.Tensor, confidence: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``images`` ``[B, 3, H, W]`` float32 on the CPU, RGB in ``[0, 1]``, ``(H, W) == info.input_size``,
        ``1 <= B <=`` the exported maximum batch; returns ``(depth [B, 1, H, W], confidence or None)``.

        Raises:
            OnnxBackendError: a wrong shape or batch, or ``confidence=True`` for a graph exported without it.
        """
        try:
            return self.model.forward(images, confidence=confidence)
        except OnnxRuntimeError as exc:
            raise OnnxBackendError(str(exc)) from None
