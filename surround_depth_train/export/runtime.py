"""An exported depth model under ONNX Runtime, with its inputs and outputs bound once per batch size.

:class:`OnnxDepthModel` reads ``<model>.onnx`` and its sidecar (refusing a sidecar that is missing, belongs to
another file or disagrees with the graph), opens a session on the requested execution providers and runs
``images [B, 3, H, W] -> depth [B, 1, H, W] (+ confidence)`` through an IOBinding:

- per batch size, one binding whose outputs are preallocated tensors: ONNX Runtime writes into them, nothing is
  allocated per frame; a new batch size gets its own binding (the old ones stay valid for when it comes back);
- on the CPU the input is bound to the caller's tensor itself (no copy) and re-bound only when another tensor
  comes in: a caller that reuses one input buffer, like the node's engine, is bound once; on CUDA / TensorRT it is
  one device buffer per batch size, filled from the host each frame;
- what :meth:`forward` returns is a copy of the bound outputs, so the next frame never overwrites a result the
  caller still holds (the torch backend's contract: fresh tensors).

CUDA and TensorRT: used when requested and present (TensorRT gets an optimisation profile from the sidecar's batch
range and an engine cache beside the ``.onnx``). They could not be run where this was written (CPU-only
onnxruntime): that code path is untested. A requested provider that is missing is an error, or with
``allow_fallback`` a warning and the CPU.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from surround_depth_train.export.sidecar import SidecarError, read_sidecar
from surround_depth_train.models.modelfile import ModelFileError, ModelInfo

__all__ = ['OnnxDepthModel', 'OnnxRuntimeError', 'OPTIMIZATION_LEVELS', 'GPU_PROVIDERS', 'resolve_providers',
           'session_options']

OPTIMIZATION_LEVELS = ('disable', 'basic', 'extended', 'layout', 'all')
GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')
CPU_PROVIDER = 'CPUExecutionProvider'


class OnnxRuntimeError(ValueError):
    """An ONNX model cannot be run as asked (provider, sidecar, input); the message says what to change."""


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxRuntimeError(f'onnxruntime is not installed ({exc}); pip install onnxruntime (CPU) or '
                               f'onnxruntime-gpu (CUDA, TensorRT)') from None
    return onnxruntime


def session_options(*, threads: int | None = None, optimization_level: str = 'all') -> Any:
    """``onnxruntime.SessionOptions``: graph optimisation level by name, intra-op threads (None: ONNX Runtime's
    default, one per physical core), sequential execution (one forward pass at a time, no inter-op pool)."""
    ort = _ort()
    levels = {'disable': 'ORT_DISABLE_ALL', 'basic': 'ORT_ENABLE_BASIC', 'extended': 'ORT_ENABLE_EXTENDED',
              'layout': 'ORT_ENABLE_LAYOUT', 'all': 'ORT_ENABLE_ALL'}
    if optimization_level not in levels or not hasattr(ort.GraphOptimizationLevel, levels[optimization_level]):
        known = [k for k, v in levels.items() if hasattr(ort.GraphOptimizationLevel, v)]
        raise OnnxRuntimeError(f'optimization_level {optimization_level!r} is not one of {known}')
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[optimization_level])
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        if int(threads) < 1:
            raise OnnxRuntimeError(f'threads must be at least 1 (or None for the default), got {threads}')
        options.intra_op_num_threads = int(threads)
    return options


def resolve_providers(requested: Sequence[str], *, allow_fallback: bool) -> list[str]:
    """The providers to open a session with: the requested ones that this onnxruntime has, then the CPU.

    Raises:
        OnnxRuntimeError: an unknown provider name, or a known one that is not available and no fallback allowed.
    """
    ort = _ort()
    if isinstance(requested, str):
        requested = [requested]
    requested = [str(p) for p in requested] or [CPU_PROVIDER]
    available, known = ort.get_available_providers(), ort.get_all_providers()
    chosen: list[str] = []
    for provider in requested:
        if provider not in known:
            raise OnnxRuntimeError(f'{provider!r} is not an ONNX Runtime execution provider; known: '
                                   f'{", ".join(known)}')
        if provider in available:
            if provider not in chosen:
                chosen.append(provider)
            continue
        message = (f'execution provider {provider} is not available in this onnxruntime '
                   f'{ort.__version__} (available: {", ".join(available)})')
        if not allow_fallback:
            raise OnnxRuntimeError(f'{message}; install the onnxruntime build that has it (onnxruntime-gpu for CUDA '
                                   f'and TensorRT), request {CPU_PROVIDER}, or allow the fallback to the CPU '
                                   f'(allow_provider_fallback: true)')
        warnings.warn(f'{message}; falling back to {CPU_PROVIDER}', RuntimeWarning, stacklevel=3)
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)  # runs whatever a GPU provider does not take
    return chosen


class _Binding:
    """One batch size's IOBinding: preallocated host outputs, and the input bound on the device of the session."""

    def __init__(self, session: Any, input_name: str, input_shape: tuple[int, ...],
                 output_shapes: dict[str, tuple[int, ...]], device: str):
        ort = _ort()
        self.io = session.io_binding()
        self.input_name = input_name
        self.input_shape = input_shape
        self.device = device
        self.outputs = {name: torch.empty(shape, dtype=torch.float32) for name, shape in output_shapes.items()}
        for name, tensor in self.outputs.items():
            self.io.bind_output(name, 'cpu', 0, np.float32, list(tensor.shape), tensor.data_ptr())
        self._bound: Tensor | None = None  # the CPU tensor the input is bound to (kept alive while bound)
        self._own: Tensor | None = None    # a contiguous copy of non-contiguous inputs
        self.input_binds = 0                # how often the input was (re-)bound: once for a reused buffer
        self._device_input = None
        if device != 'cpu':
            self._device_input = ort.OrtValue.ortvalue_from_shape_and_type(list(input_shape), np.float32, device, 0)
            self.io.bind_ortvalue_input(input_name, self._device_input)

    def feed(self, images: Tensor) -> None:
        """Make ``images`` the input of the next :meth:`run`."""
        if self._device_input is not None:
            self._device_input.update_inplace(np.ascontiguousarray(images.numpy()))
            return
        if not images.is_contiguous():
            if self._own is None:
                self._own = torch.empty(self.input_shape, dtype=torch.float32)
            images = self._own.copy_(images)
        # Holding the bound tensor keeps its memory alive, so an equal pointer means the same memory.
        if self._bound is None or self._bound.data_ptr() != images.data_ptr():
            self._bind(images)
            self._bound = images

    def _bind(self, tensor: Tensor) -> None:
        self.io.bind_input(self.input_name, 'cpu', 0, np.float32, list(self.input_shape), tensor.data_ptr())
        self.input_binds += 1

    def run(self, session: Any) -> None:
        if self.device != 'cpu':
            self.io.synchronize_inputs()
        session.run_with_iobinding(self.io)
        if self.device != 'cpu':
            self.io.synchronize_outputs()


class OnnxDepthModel:
    """``images [B, 3, H, W]`` float RGB in ``[0, 1]`` (CPU) -> depth ``[B, 1, H, W]`` (+ confidence) via ONNX Runtime.

    Args:
        path: the ``.onnx`` file written by ``python -m surround_depth_train.export`` (its sidecar beside it).
        providers: ONNX Runtime execution providers in order of preference (the CPU is always added last).
        allow_fallback: a requested provider that is missing becomes a warning (and the CPU) instead of an error.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        optimization_level: graph optimisations, one of :data:`OPTIMIZATION_LEVELS`.

    Attributes:
        info: the model's :class:`~surround_depth_train.models.modelfile.ModelInfo` (from the sidecar), with
            ``fully_convolutional=False`` (the graph's input size is fixed) and ``has_confidence`` whether the
            graph has the confidence output.
        sidecar: the sidecar's fields; ``input_size`` ``(H, W)``, ``max_batch``, ``outputs``, ``providers`` (as
            the session runs them), ``threads``, ``optimization_level``; ``precision`` (``fp32``, ``int8``) and,
            for int8, ``calibration`` (the camera sets it was calibrated on) and ``int8`` (how it was quantised).
        precision: ``fp32`` or ``int8`` (sidecars before int8 exports say nothing: fp32).
        bins_downsample: the bins head's resolution factor baked into the graph (``export --bins-downsample``; 1
            for sidecars that say nothing).
    """

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[str] = (CPU_PROVIDER,),
                 allow_fallback: bool = False, threads: int | None = None, optimization_level: str = 'all'):
        ort = _ort()
        self.path = Path(path)
        if self.path.suffix != '.onnx':
            raise OnnxRuntimeError(f'{self.path} is not an .onnx file; export a model file with python -m '
                                   f'surround_depth_train.export --model MODEL_FILE --output student.onnx')
        try:
            self.sidecar = read_sidecar(self.path)
        except FileNotFoundError:
            raise OnnxRuntimeError(f'ONNX file {str(self.path)!r} does not exist') from None
        except SidecarError as exc:
            raise OnnxRuntimeError(str(exc)) from None
        self.input_size: tuple[int, int] = (int(self.sidecar['input_size'][0]), int(self.sidecar['input_size'][1]))
        self.max_batch = int(self.sidecar['batch'][1])
        self.precision = str(self.sidecar.get('precision', 'fp32'))  # 'int8' for `export --int8`
        self.bins_downsample = int(self.sidecar.get('bins_downsample', 1))  # `export --bins-downsample`
        self.outputs: tuple[str, ...] = tuple(self.sidecar['outputs'])
        try:
            info = ModelInfo.from_file_dict(self.sidecar['model'])
        except (ModelFileError, KeyError, TypeError, ValueError) as exc:
            raise OnnxRuntimeError(f'the sidecar of {self.path} has no readable model description ({exc}); '
                                   f're-export: python -m surround_depth_train.export --model MODEL_FILE --output '
                                   f'{self.path}') from None
        if info.input_size != self.input_size:
            raise OnnxRuntimeError(f'the sidecar of {self.path} gives the graph input {list(self.input_size)} but '
                                   f'the model {list(info.input_size)}; re-export: python -m '
                                   f'surround_depth_train.export --model MODEL_FILE --output {self.path}')
        # The graph runs at its traced input size only, and has a confidence map only if it was exported with one.
        self.info = dataclasses.replace(info, fully_convolutional=False, has_confidence='confidence' in self.outputs)
        self.threads = threads
        self.optimization_level = optimization_level
        chosen = resolve_providers(providers, allow_fallback=allow_fallback)
        options = session_options(threads=threads, optimization_level=optimization_level)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=self._with_options(chosen))
        except Exception as exc:  # onnxruntime raises its own exception types (graph, provider start-up)
            raise OnnxRuntimeError(f'ONNX Runtime cannot open {self.path} on {chosen} ({exc}); if a GPU provider '
                                   f'failed to start, check its installation or request {CPU_PROVIDER}; if the '
                                   f'graph is damaged, re-export it with python -m surround_depth_train.export'
                                   ) from None
        self.providers: tuple[str, ...] = tuple(self.session.get_providers())
        # A GPU provider that is compiled in can still fail to start (drivers, libraries): ONNX Runtime then drops
        # it silently. Treat that like an unavailable provider.
        lost = [p for p in chosen if p not in self.providers]
        if lost:
            message = f'execution providers {lost} failed to start (session runs on {list(self.providers)})'
            if not allow_fallback:
                raise OnnxRuntimeError(f'{message}; check the CUDA / TensorRT installation, request {CPU_PROVIDER}, '
                                       f'or allow the fallback to the CPU (allow_provider_fallback: true)')
            warnings.warn(f'{message}; running on what started', RuntimeWarning, stacklevel=2)
        self.device = 'cuda' if self.providers[0] in GPU_PROVIDERS else 'cpu'
        self._output_shapes = self._check_graph()
        self._bindings: dict[tuple[int, tuple[str, ...]], _Binding] = {}

    def _with_options(self, providers: list[str]) -> list[Any]:
        height, width = self.input_size
        name = self.sidecar['input']
        shapes = {b: f'{name}:{b}x3x{height}x{width}' for b in (1, self.max_batch)}
        out: list[Any] = []
        for provider in providers:
            if provider == 'TensorrtExecutionProvider':
                cache = self.path.with_name(self.path.name + '.trt_cache')
                out.append((provider, {'trt_profile_min_shapes': shapes[1], 'trt_profile_opt_shapes':
                                       shapes[self.max_batch], 'trt_profile_max_shapes': shapes[self.max_batch],
                                       'trt_engine_cache_enable': 'True', 'trt_engine_cache_path': str(cache)}))
            elif provider == 'CUDAExecutionProvider':
                out.append((provider, {'device_id': 0}))
            else:
                out.append(provider)
        return out

    def _check_graph(self) -> dict[str, tuple[str | int, ...]]:
        """The graph's input and outputs against the sidecar; output shapes ``('batch', C, H, W)``."""
        reexport = (f'the sidecar does not describe this graph; re-export: python -m surround_depth_train.export '
                    f'--model MODEL_FILE --output {self.path}')
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != self.sidecar['input']:
            raise OnnxRuntimeError(f'{self.path} takes inputs {[i.name for i in inputs]}, the sidecar says '
                                   f'{self.sidecar["input"]!r}: {reexport}')
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != self.input_size:
            raise OnnxRuntimeError(f'{self.path} takes input of shape {shape}, the sidecar says '
                                   f'[B, 3, {self.input_size[0]}, {self.input_size[1]}]: {reexport}')
        if isinstance(shape[0], int):
            raise OnnxRuntimeError(f'{self.path} has a fixed batch of {shape[0]} (the export makes it dynamic): '
                                   f'{reexport}')
        outputs = {o.name: tuple(o.shape) for o in self.session.get_outputs()}
        if list(outputs) != list(self.outputs):
            raise OnnxRuntimeError(f'{self.path} has outputs {list(outputs)}, the sidecar says '
                                   f'{list(self.outputs)}: {reexport}')
        # The graph may leave dimensions symbolic where the exporter's shape inference gave up (ONNX Runtime
        # resolves them when it optimises): the shapes come from the sidecar, checked against what the graph fixes.
        shapes = {}
        for name, declared in outputs.items():
            channels = 1 if name in ('depth', 'confidence') else int((self.info.head or {}).get('n_bins', 0))
            expected = (channels, *self.input_size)
            fixed = [(d, e) for d, e in zip(declared[1:], expected) if isinstance(d, int)]
            if len(declared) != 4 or channels < 1 or any(d != e for d, e in fixed):
                raise OnnxRuntimeError(f'{self.path}: output {name} has shape {list(declared)}, the sidecar implies '
                                       f'[B, {", ".join(map(str, expected))}]: {reexport}')
            shapes[name] = ('batch', *expected)
        return shapes

    @property
    def has_confidence(self) -> bool:
        return 'confidence' in self.outputs

    def _check_images(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor):
            raise OnnxRuntimeError(f'expected a torch.Tensor [B, 3, H, W], got {type(images).__name__}')
        height, width = self.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, height, width):
            raise OnnxRuntimeError(f'expected images [B, 3, {height}, {width}] (the exported input size), got '
                                   f'{list(images.shape)}: resize to {height}x{width} first (the engine does)')
        if not 1 <= images.shape[0] <= self.max_batch:
            raise OnnxRuntimeError(f'batch {images.shape[0]} is outside the exported range 1..{self.max_batch}; '
                                   f're-export with --max-batch {images.shape[0]}')
        if images.device.type != 'cpu':
            raise OnnxRuntimeError(f'images are on {images.device}; pass CPU tensors (the ONNX Runtime model copies '
                                   f'them to its own device)')
        images = images.detach()
        if images.dtype != torch.float32:
            if not images.is_floating_point():
                raise OnnxRuntimeError(f'expected float RGB in [0, 1], got {images.dtype}; divide uint8 by 255')
            images = images.float()
        return images

    def run(self, images: Tensor, outputs: Sequence[str] = ('depth',)) -> dict[str, Tensor]:
        """The requested outputs (any of the exported ones) for ``images``, as fresh tensors."""
        missing = [o for o in outputs if o not in self.outputs]
        if missing:
            raise OnnxRuntimeError(f'{self.path} was exported without {missing} (it has {list(self.outputs)}); '
                                   f're-export with --outputs {",".join(dict.fromkeys([*self.outputs, *missing]))}')
        images = self._check_images(images)
        batch = int(images.shape[0])
        key = (batch, tuple(outputs))
        binding = self._bindings.get(key)
        if binding is None:
            shapes = {o: (batch, *self._output_shapes[o][1:]) for o in outputs}
            binding = _Binding(self.session, self.sidecar['input'], (batch, *images.shape[1:]), shapes, self.device)
            self._bindings[key] = binding
        binding.feed(images)
        binding.run(self.session)
        return {name: tensor.clone() for name, tensor in binding.outputs.items()}

    def forward(self, images: Tensor, confidence: bool = False) -> tuple[Tensor, Tensor | None]:
        """``(depth [B, 1, H, W], confidence [B, 1, H, W] or None)``; ``confidence=True`` needs a graph exported
        with the confidence output."""
        if confidence and not self.has_confidence:
            raise OnnxRuntimeError(f'{self.path} was exported without the confidence output; re-export with '
                                   f'--outputs depth,confidence (a model with a bins head), or run without confidence')
        out = self.run(images, ('depth', 'confidence') if confidence else ('depth',))
        return out['depth'], out.get('confidence')

    __call__ = forward
