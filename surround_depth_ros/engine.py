"""DepthEngine: a model file -> metric depth for a set of cameras in one batched forward pass (no rclpy).

The engine is the one inference path of the node, the bag evaluator and the benchmarks:

1. each camera's RGB image (``[H, W, 3]`` uint8, any size) goes to the device where the model runs and is resized
   there to the network input recorded in the model file (bilinear with antialiasing), its ``K`` scaled to match;
2. one forward pass over all cameras (``depth_only=True``; confidence computed inside the bins head on request);
3. depth (and confidence) resized back on the device to each camera's own resolution and copied into host buffers
   that are reused from call to call.

Metric depth depends on the focal length: a model trained at focal length ``f_train`` that sees an image from a
camera with ``f_camera`` (both at the network input size) predicts ``depth * f_train / f_camera``. The model file
records the training rig (format version 2); the engine warns once per camera when the focal lengths differ by more
than ``focal_tolerance`` and, with ``focal_correction``, multiplies the depth by ``f_camera / f_train``
(``f = sqrt(fx * fy)``, since resizing can be anisotropic). Older model files have no training rig: the engine says
once that the correction is unavailable.

A camera is compared with the training camera of the same name, or with the one ``training_cameras`` maps it to
(``{camera: training camera}``, e.g. ``{CAM_FRONT: front}`` for a nuScenes bag and a model trained on SurroundSim),
never by position: rigs list their cameras in different orders. A camera that matches none gets no focal check
and never a focal correction, and the engine says so once, naming the mapping that would match it.

Backends: ``torch`` (this module) and ``onnxruntime`` (:mod:`surround_depth_ros.onnx_backend`); both take
``[B, 3, h, w]`` float RGB in ``[0, 1]`` and return ``(depth, confidence or None)`` as ``[B, 1, h, w]``.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from surround_depth_train.geometry.camera import check_intrinsics, resize_intrinsics
from surround_depth_train.models.input_size import input_size_problem, input_size_warning

__all__ = ['DepthEngine', 'EngineError', 'EnginePrediction', 'TorchBackend', 'PRECISIONS', 'BACKENDS',
           'focal_ratio']

PRECISIONS = ('fp32', 'fp16', 'bf16', 'int8')  # int8: an .onnx from `export --int8`, backend onnxruntime
BACKENDS = ('torch', 'onnxruntime')
_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


class EngineError(ValueError):
    """The engine cannot be built or cannot run this input; the message says what to change."""


@dataclass
class EnginePrediction:
    """One camera set's result. ``depths`` and ``confidences`` are views into host buffers that the engine reuses:
    they stay valid until the next :meth:`DepthEngine.predict` call (copy them to keep them longer)."""

    depths: list[np.ndarray]                 # per camera [H, W] float32 metres, at the camera's own resolution
    confidences: list[np.ndarray] | None     # per camera [H, W] float32 in [0, 1], or None
    intrinsics_net: list[np.ndarray]         # per camera K at the network input size
    focal_ratios: list[float | None]         # f_camera / f_train per camera (None: no training rig)
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess, model, postprocess


def focal_ratio(K_net: np.ndarray, K_train: np.ndarray) -> float:
    """``f_camera / f_train`` with ``f = sqrt(fx * fy)`` (both ``K`` at the network input size)."""
    return math.sqrt(float(K_net[0, 0]) * float(K_net[1, 1])) / math.sqrt(float(K_train[0, 0]) * float(K_train[1, 1]))


class TorchBackend:
    """Runs a model file's network with PyTorch on ``device`` at ``precision`` (fp16 on accelerators only, bf16
    also on CPUs with native bf16)."""

    def __init__(self, path: str | Path, *, device: str = 'cpu', precision: str = 'fp32', bins_downsample: int = 1):
        from surround_depth_train.models.bins import set_bins_downsample
        from surround_depth_train.models.modelfile import ModelFileError, load_model

        if precision not in PRECISIONS:
            raise EngineError(f'precision {precision!r} is not one of {PRECISIONS}')
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        try:
            self.device = torch.device(device)
        except RuntimeError:
            raise EngineError(f'device {device!r} is not a torch device; use cpu, cuda, cuda:N or auto') from None
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise EngineError(f'device {device!r} was requested but this machine has no usable CUDA device; '
                              f'use device: cpu (or auto)')
        if precision == 'int8':
            raise EngineError('precision int8 runs an int8 ONNX model: export one with python -m '
                              'surround_depth_train.export --int8 and set backend: onnxruntime with that .onnx as '
                              'model_file')
        if self.device.type == 'cpu':
            from surround_depth_train.models.reduced_precision import PrecisionError, check_cpu_precision

            try:
                check_cpu_precision(precision)
            except PrecisionError as exc:
                raise EngineError(str(exc)) from None
        try:
            self.model, self.meta = load_model(path, map_location=self.device)
        except FileNotFoundError:
            raise EngineError(f'model file {str(path)!r} does not exist; pass model_file: the model.pt written by '
                              f'`python -m surround_depth_train.train` (or a file saved with save_model)') from None
        except ModelFileError as exc:
            raise EngineError(str(exc)) from None
        self.precision = precision
        self.has_bins = bool(getattr(self.model, 'has_bins', False))
        try:
            set_bins_downsample(self.model, bins_downsample)
        except ValueError as exc:
            raise EngineError(f'{self.meta.get("name", path)}: {exc}') from None
        self.min_input_side = int(getattr(self.model, 'min_input_side', 1))
        # CPU bf16: autocast with the fp32 islands (bins head but its stage projections, disparity convolution)
        # and channels-last.
        self._bf16_cpu = precision == 'bf16' and self.device.type == 'cpu'
        if self._bf16_cpu:
            from surround_depth_train.models.reduced_precision import Bf16Model

            self.model = Bf16Model(self.model, 'cpu')

    @torch.inference_mode()
    def forward(self, images: torch.Tensor, confidence: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        kwargs: dict[str, Any] = {'depth_only': True}
        if confidence and self.has_bins:
            kwargs['confidence'] = True
        with torch.autocast(self.device.type, dtype=_DTYPES.get(self.precision, torch.float32),
                            enabled=self.precision != 'fp32' and not self._bf16_cpu):
            out = self.model(images, **kwargs)
        conf = getattr(out, 'confidence', None) if confidence else None
        return out.depth.float(), None if conf is None else conf.float()


class DepthEngine:
    """Batched multi-camera metric depth from a model file.

    Args:
        model_path: a model file (``save_model``) or, with ``backend='onnxruntime'``, an exported ``.onnx``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (torch backend).
        precision: ``fp32``; ``fp16`` or ``bf16`` on a GPU; ``bf16`` on a CPU with native bf16 (AVX512_BF16, AMX;
            refused elsewhere), the bins head (but its stages' 1x1 projections) and the disparity convolution in
            fp32 (:mod:`surround_depth_train.models.reduced_precision`); with ``backend='onnxruntime'`` the precision
            the ``.onnx`` was exported in (``fp32``, or ``int8`` from ``export --int8``).
        bins_downsample: 1, 2 or 4: the MetricBins head computes depth at ``1 / bins_downsample`` of the network
            input and upsamples it (:class:`~surround_depth_train.models.bins.MetricBins`), a quarter (a sixteenth)
            of the head's full-resolution work; MetricBins students only. With ``backend='onnxruntime'`` the factor
            the ``.onnx`` was exported with (``export --bins-downsample``).
        input_size: ``(height, width)`` overriding the model file's input size; fully convolutional students only,
            sides at least the network's ``min_input_side``; any other size than the training size warns once.
        backend: ``torch`` or ``onnxruntime``.
        allow_teacher: run a teacher model file (tens of times slower than a student); refused otherwise.
        focal_correction: multiply depth by ``f_camera / f_train`` when they differ by more than ``focal_tolerance``.
        focal_tolerance: relative focal-length difference that counts as a different camera.
        training_cameras: ``{camera: training camera}`` for cameras named otherwise than in the training rig.
        onnx_providers, allow_provider_fallback: ONNX Runtime execution providers and whether an unavailable one may
            fall back to the CPU.
        logger: where the once-per-camera warnings go.
    """

    def __init__(self, model_path: str | Path, *, device: str = 'cpu', precision: str = 'fp32',
                 input_size: Sequence[int] | None = None, backend: str = 'torch', allow_teacher: bool = False,
                 bins_downsample: int = 1, focal_correction: bool = False, focal_tolerance: float = 0.02,
                 training_cameras: Mapping[str, str] | None = None,
                 onnx_providers: Sequence[str] = ('CPUExecutionProvider',), allow_provider_fallback: bool = False,
                 logger: logging.Logger | Callable[[str], None] | None = None):
        if backend not in BACKENDS:
            raise EngineError(f'backend {backend!r} is not one of {BACKENDS}')
        if not Path(model_path).is_file():
            raise EngineError(f'model file {str(model_path)!r} does not exist; pass the model.pt written by '
                              f'`python -m surround_depth_train.train` (torch) or an .onnx written by '
                              f'`python -m surround_depth_train.export` (onnxruntime)')
        self._warn = _warner(logger)
        if backend == 'torch':
            from surround_depth_train.models.modelfile import ModelInfo

            self.backend = TorchBackend(model_path, device=device, precision=precision,
                                        bins_downsample=bins_downsample)
            info = ModelInfo.from_file_dict(self.backend.meta)
            self.device = self.backend.device
        else:
            from surround_depth_ros.onnx_backend import OnnxBackend

            self.backend = OnnxBackend(model_path, providers=tuple(onnx_providers),
                                       allow_fallback=allow_provider_fallback, allow_teacher=allow_teacher)
            exported = self.backend.precision
            if precision != exported:
                raise EngineError(f'{Path(model_path).name} was exported in {exported} and the onnxruntime backend '
                                  f'runs the exported precision; set precision: {exported}')
            baked = self.backend.bins_downsample
            if bins_downsample != baked:
                raise EngineError(f'{Path(model_path).name} was exported with bins_downsample {baked} and the '
                                  f'onnxruntime backend runs the exported graph; set bins_downsample: {baked}, or '
                                  f'export again with python -m surround_depth_train.export --bins-downsample '
                                  f'{bins_downsample}')
            info = self.backend.info
            self.device = torch.device('cpu')
        self.info = info
        self.bins_downsample = int(bins_downsample)
        self.name = info.name
        self.is_teacher = info.is_teacher
        if self.is_teacher and not allow_teacher:
            raise EngineError(f'{model_path} holds the teacher {self.name}, tens of times slower than a student; '
                              f'deploy a distilled student, or set allow_teacher: true to run it anyway')
        self.depth_range = (float(info.depth_range[0]), float(info.depth_range[1]))
        self.has_confidence = bool(info.has_confidence)
        self.training_rig = _training_rig(info.training_rig)
        size = tuple(int(v) for v in info.input_size)
        if input_size is not None and tuple(int(v) for v in input_size) != size:
            input_size = tuple(int(v) for v in input_size)
            if len(input_size) != 2 or min(input_size) <= 0:
                raise EngineError(f'input_size must be [height, width], got {list(input_size)}')
            if not info.fully_convolutional:
                raise EngineError(f'{self.name} runs at its recorded input size {list(size)} only; remove the '
                                  f'input_size override (only fully convolutional students accept one)')
            problem = input_size_problem(self.name, input_size, getattr(self.backend, 'min_input_side', 1))
            if problem:
                raise EngineError(f'input_size {list(input_size)}: {problem}; remove the override or enlarge it')
            if self.training_rig is not None:
                # The training intrinsics were recorded at the model file's size: scale them to the new one.
                self.training_rig = [dict(cam, K=resize_intrinsics(cam['K'], (size[1], size[0]),
                                                                   (input_size[1], input_size[0])))
                                     for cam in self.training_rig]
            self._warn(input_size_warning(self.name, size, input_size))
            size = input_size
        self.input_size: tuple[int, int] = size  # (height, width)
        self.training_cameras = {str(k): str(v) for k, v in (training_cameras or {}).items()}
        if self.training_rig is not None:
            known = [c['name'] for c in self.training_rig]
            wrong = {k: v for k, v in self.training_cameras.items() if v not in known}
            if wrong:
                raise EngineError(f'training_cameras {wrong}: the training rig of {self.name} has the cameras '
                                  f'{known}; map each camera to one of them')
        self.focal_correction = bool(focal_correction)
        self.focal_tolerance = float(focal_tolerance)
        self._warned: set[str] = set()
        self._batch: torch.Tensor | None = None
        self._host: dict[tuple[str, int], torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------------ helpers
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)

    def _train_K(self, name: str | None) -> np.ndarray | None:
        """``K`` of the training camera ``name`` plays (module docstring); None when there is none."""
        if self.training_rig is None:
            self._warn_once('no-rig', f'{self.name}: the model file records no training rig (format version 1); '
                                      f'the focal-length check and correction are unavailable')
            return None
        if name is None:
            return None
        wanted = self.training_cameras.get(name, name)
        return next((cam['K'] for cam in self.training_rig if cam['name'] == wanted), None)

    def _warn_unmatched(self, names: Sequence[str] | None) -> None:
        if self.training_rig is None:
            return
        train = [c['name'] for c in self.training_rig]
        if names is None:
            self._warn_once('unnamed', f'{self.name}: cameras passed without names cannot be matched to the '
                                       f'training rig {train}; their focal length is not checked or corrected')
            return
        unmatched = [n for n in names if self.training_cameras.get(n, n) not in train]
        if unmatched:
            example = ', '.join(f'{n}: <one of {train}>' if i == 0 else f'{n}: ...' for i, n in enumerate(unmatched))
            self._warn_once(f'unmatched-{sorted(unmatched)}',
                            f'cameras {unmatched} are not in the training rig {train} of {self.name}: their focal '
                            f'length is not checked and never corrected; name the training camera each one plays '
                            f'with training_cameras: {{{example}}} (in a topic map for the bag tools)')

    def _host_buffer(self, kind: str, index: int, shape: tuple[int, int]) -> torch.Tensor:
        buf = self._host.get((kind, index))
        if buf is None or tuple(buf.shape) != shape:
            buf = torch.empty(shape, dtype=torch.float32, pin_memory=self.device.type == 'cuda')
            self._host[(kind, index)] = buf
        return buf

    # ---------------------------------------------------------------------------------------------- inference
    def prepare(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """``[N, 3, h, w]`` float RGB in ``[0, 1]`` on the engine's device at the network input size."""
        h, w = self.input_size
        n = len(images)
        if self._batch is None or self._batch.shape[0] != n:
            self._batch = torch.empty(n, 3, h, w, device=self.device)
        for i, image in enumerate(images):
            x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device, non_blocking=True)
            x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            if tuple(x.shape[-2:]) != (h, w):
                x = F.interpolate(x, size=(h, w), mode='bilinear', align_corners=False,
                                  antialias=x.shape[-2] > h or x.shape[-1] > w)
            self._batch[i].copy_(x[0])
        return self._batch

    def predict(self, images: Sequence[np.ndarray], intrinsics: Sequence[np.ndarray],
                names: Sequence[str] | None = None, confidence: bool = False) -> EnginePrediction:
        """Metric depth for each camera at its own resolution.

        Args:
            images: per camera ``[H, W, 3]`` uint8 RGB (sizes may differ between cameras).
            intrinsics: per camera 3x3 ``K`` of that image.
            names: camera names, to match the training rig by name (``training_cameras`` maps other names); without
                names no camera is focal-checked.
            confidence: also return per-pixel confidence (bins models; None otherwise).
        """
        if len(images) != len(intrinsics) or not images:
            raise EngineError(f'got {len(images)} images and {len(intrinsics)} intrinsics; pass one K per image')
        if names is not None and len(names) != len(images):
            raise EngineError(f'got {len(names)} names for {len(images)} images')
        sizes = []
        for i, image in enumerate(images):
            label = names[i] if names is not None else f'camera {i}'
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                    and image.shape[2] == 3):
                raise EngineError(f'{label}: expected an [H, W, 3] uint8 RGB image, got '
                                  f'{getattr(image, "dtype", type(image))} {getattr(image, "shape", "")}')
            try:
                check_intrinsics(np.asarray(intrinsics[i], dtype=np.float64), f'{label}: K')
            except (TypeError, ValueError) as exc:
                raise EngineError(str(exc)) from None
            sizes.append((image.shape[0], image.shape[1]))
        h, w = self.input_size
        t0 = time.perf_counter()
        batch = self.prepare(images)
        self._sync()
        t1 = time.perf_counter()
        depth, conf = self.backend.forward(batch, confidence=confidence)
        self._sync()
        t2 = time.perf_counter()
        K_net, ratios = [], []
        self._warn_unmatched(names)
        for i, (H, W) in enumerate(sizes):
            K = resize_intrinsics(np.asarray(intrinsics[i], dtype=np.float64), (W, H), (w, h))
            K_net.append(K)
            name = names[i] if names is not None else None
            K_train = self._train_K(name)
            ratio = None if K_train is None else focal_ratio(K, K_train)
            ratios.append(ratio)
            if ratio is not None and abs(ratio - 1.0) > self.focal_tolerance:
                action = 'correcting depth by that factor' if self.focal_correction else \
                    'set focal_correction: true to scale depth by it'
                self._warn_once(f'focal-{i}-{name}', f'{name or f"camera {i}"}: focal length at the network input '
                                                     f'differs from training by a factor {ratio:.3f} (tolerance '
                                                     f'{self.focal_tolerance}); {action}')
        depths = self._to_host('depth', depth, sizes, ratios if self.focal_correction else None)
        confidences = None if conf is None else self._to_host('confidence', conf, sizes, None)
        self._sync()
        t3 = time.perf_counter()
        return EnginePrediction(depths=depths, confidences=confidences, intrinsics_net=K_net, focal_ratios=ratios,
                                timings_ms={'preprocess': 1e3 * (t1 - t0), 'model': 1e3 * (t2 - t1),
                                            'postprocess': 1e3 * (t3 - t2)})

    def _to_host(self, kind: str, maps: torch.Tensor, sizes: list[tuple[int, int]],
                 ratios: list[float | None] | None) -> list[np.ndarray]:
        out = []
        for i, (H, W) in enumerate(sizes):
            x = maps[i:i + 1]
            if tuple(x.shape[-2:]) != (H, W):
                x = F.interpolate(x, size=(H, W), mode='bilinear', align_corners=False)
            if ratios is not None and ratios[i] is not None and abs(ratios[i] - 1.0) > self.focal_tolerance:
                x = x * ratios[i]
            buf = self._host_buffer(kind, i, (H, W))
            buf.copy_(x[0, 0], non_blocking=self.device.type == 'cuda')
            out.append(buf.numpy())
        return out

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)


def _training_rig(rig: Any) -> list[dict] | None:
    if not rig:
        return None
    return [{'name': str(cam['name']), 'K': np.asarray(cam['K'], dtype=np.float64)} for cam in rig]


def _warner(logger: logging.Logger | Callable[[str], None] | None) -> Callable[[str], None]:
    if logger is None:
        return logging.getLogger('surround_depth.engine').warning
    if isinstance(logger, logging.Logger):
        return logger.warning
    return logger
