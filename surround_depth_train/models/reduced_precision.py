"""bf16 inference on the CPU: autocast around the network, fp32 where the numerics need it, channels-last memory.

Under ``torch.autocast('cpu', torch.bfloat16)`` convolutions and matrix products run in bfloat16 (8 significant
bits) with fp32 accumulation inside oneDNN. Two parts of a depth student must not see bf16 rounding:

- **the bins head** (MetricBins, AdaBins, LocalBins): the log-binomial's logits reach ``|log p| / t`` with a
  temperature down to 0.02, so a bf16 logit near 100 is off by 0.4 and its softmax probability by ~40 %; the
  attractors move centers by ``dx / (1 + alpha dx^2)`` with ``alpha = 300`` on normalised differences that bf16
  cannot resolve; the expected depth ``sum_k P_k C_k`` over centers up to 80 m has a bf16 step of 0.25-0.5 m. So
  the head runs in fp32 (seed, attractors, log-binomial MLP, softmax, expected depth, confidence; the one
  exception, the banded path's stage projections, is below). On the CPU
  without autograd MetricBins takes its banded path, which already disables autocast and converts each image's
  features to fp32 band by band: it is left as it is, so its memory behaviour (nothing fp32 at full resolution
  but ``D``) is unchanged. Every other head path gets autocast off and fp32 inputs (:func:`keep_fp32`).
  One part of the banded path does run in bf16 (``bf16_projections``, on by default): each refinement stage's
  1x1 projections (decoder feature -> hidden -> the attractor's first layer and the carry to the next stage; see
  ``bins.banded``), linear layers like any convolution of the network, with fp32 accumulation, their results
  widened to fp32 before they meet the resized fp32 state. Measured on the experiment's Monodepth2 + MB at six
  640 x 384 cameras with the head at 1/2: 1127 -> 1012 ms per set, AbsRel on the 24 SurroundSim test sets 0.18016
  -> 0.18010, depth at most 0.74 % (mean 0.05 %) from fp32 projections on random pixels.
- **the disparity convolution** (``dispconv_0`` and its HR-Depth / MonoViT namesakes): its output goes through a
  sigmoid and ``1 / (1/max + (1/min - 1/max) s)``; far away ``s ~ e^x``, so a bf16 logit (step 1/32 near -7)
  moves far depth by ~1.6 %. It takes fp32 input and runs in fp32 (one output channel).

bf16 pays only where the CPU computes it natively: AVX512_BF16 (Cooper Lake, Zen 4) or AMX (Sapphire Rapids) on
x86, the BF16 extension on Arm. Elsewhere oneDNN emulates it, slower than fp32; :func:`native_bf16` reads
``/proc/cpuinfo`` to tell, and :func:`check_cpu_precision` refuses bf16 there with a line that says so.
The network's convolutions run channels-last (oneDNN's native layout for bf16: no reorder per layer).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from surround_depth_train.models.bins import MetricBins

__all__ = ['CPUINFO', 'BF16_FLAGS', 'PrecisionError', 'native_bf16', 'check_cpu_precision', 'keep_fp32',
           'fp32_islands', 'Bf16Model']

CPUINFO = Path('/proc/cpuinfo')
#: cpuinfo flags (x86 ``flags``, Arm ``Features``) of native bf16 arithmetic, best first.
BF16_FLAGS = ('amx_bf16', 'avx512_bf16', 'bf16')
_DISPARITY_CONV = re.compile(r'^disp_?conv', re.IGNORECASE)


class PrecisionError(ValueError):
    """The precision asked for cannot run well here; the message says what to use instead."""


def native_bf16(cpuinfo: str | Path | None = None) -> str | None:
    """The cpuinfo flag that gives this CPU native bf16 (``'amx_bf16'``, ``'avx512_bf16'``, ``'bf16'``) or None.

    Args:
        cpuinfo: a ``/proc/cpuinfo``-format file (default :data:`CPUINFO`); a missing or unreadable one (not
            Linux) counts as no native bf16.
    """
    try:
        text = Path(cpuinfo if cpuinfo is not None else CPUINFO).read_text(errors='replace')
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(':')
        if key.strip().lower() in ('flags', 'features'):
            flags.update(value.split())
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def check_cpu_precision(precision: str, cpuinfo: str | Path | None = None) -> None:
    """Refuse a CPU precision that this CPU has no native arithmetic for.

    Raises:
        PrecisionError: ``fp16`` (no CPU kernels worth having), or ``bf16`` without AVX512_BF16 / AMX / Arm BF16.
    """
    if precision == 'fp16':
        raise PrecisionError('precision fp16 runs on a GPU only; on the CPU use precision: bf16 (CPUs with '
                             'AVX512_BF16 or AMX) or fp32, or an int8 ONNX model with backend: onnxruntime')
    if precision == 'bf16' and native_bf16(cpuinfo) is None:
        raise PrecisionError('precision bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX on x86, BF16 on Arm) '
                             'and this one has none in /proc/cpuinfo, so it would be emulated and slower than fp32; '
                             'use precision: fp32, or an int8 ONNX model (python -m surround_depth_train.export '
                             '--int8) with backend: onnxruntime')


def keep_fp32(module: nn.Module) -> None:
    """Make ``module`` compute in fp32 inside any autocast region: autocast off, floating tensor inputs (also inside
    lists and tuples) cast to fp32. Its outputs are fp32. Done once per module (an instance-level ``forward``)."""
    if getattr(module.forward, '_keeps_fp32', False):
        return
    forward = module.forward

    @functools.wraps(forward)
    def fp32_forward(*args: Any, **kwargs: Any) -> Any:
        return _fp32_call(forward, args, kwargs)

    fp32_forward._keeps_fp32 = True  # type: ignore[attr-defined]
    module.forward = fp32_forward


def _metric_bins_fp32(head: MetricBins) -> None:
    """MetricBins: its banded path (CPU, no autograd) already computes in fp32 image by image and is called as it
    is (casting its full-resolution inputs up front would cost what the banded path saves); every other path gets
    :func:`keep_fp32`'s treatment."""
    if getattr(head.forward, '_keeps_fp32', False):
        return
    forward = head.forward

    @functools.wraps(forward)
    def fp32_forward(bottleneck: Tensor, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() and bottleneck.device.type == 'cpu' and head.banded_inference:
            return forward(bottleneck, *args, **kwargs)
        return _fp32_call(forward, (bottleneck, *args), kwargs)

    fp32_forward._keeps_fp32 = True  # type: ignore[attr-defined]
    head.forward = fp32_forward


def _fp32_call(forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    device_type = tensors[0].device.type if tensors else 'cpu'
    with torch.autocast(device_type, enabled=False):
        return forward(*_to_fp32(args), **{k: _to_fp32(v) for k, v in kwargs.items()})


def _to_fp32(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    return value


def fp32_islands(model: nn.Module) -> list[str]:
    """Keep the parts of ``model`` that bf16 would spoil in fp32 (module docstring); returns their names."""
    names = []
    for name, module in model.named_modules():
        leaf = name.rsplit('.', 1)[-1]
        if isinstance(module, MetricBins):
            _metric_bins_fp32(module)
        elif name.endswith('metric_bins') or _DISPARITY_CONV.match(leaf):
            keep_fp32(module)  # AdaBins / LocalBins (they sit in ``metric_bins`` too), disparity convolutions
        else:
            continue
        names.append(name)
    return names


class Bf16Model(nn.Module):
    """``model`` run under bf16 autocast on ``device_type`` with its fp32 islands, channels-last.

    The call is the model's (``images, **kwargs`` -> its output); floating outputs keep the dtype the model gives
    them (depth and confidence come out of fp32 islands as fp32).

    Args:
        model: a depth network (a student; the engine refuses teachers unless asked).
        device_type: ``'cpu'`` or ``'cuda'``.
        channels_last: convert weights and input to channels-last (oneDNN's layout for bf16 convolutions).
        bf16_projections: MetricBins' banded path (CPU) computes its stages' 1x1 projections in bf16 (module
            docstring); False keeps the whole head in fp32.
    """

    def __init__(self, model: nn.Module, device_type: str = 'cpu', channels_last: bool = True,
                 bf16_projections: bool = True):
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.channels_last = bool(channels_last)
        self.islands = fp32_islands(model)
        for module in model.modules():
            if isinstance(module, MetricBins):
                module.projection_dtype = torch.bfloat16 if bf16_projections else None
        if self.channels_last:
            model.to(memory_format=torch.channels_last)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__('model'), name)  # has_bins, min_input_side, ...

    def forward(self, images: Tensor, **kwargs: Any) -> Any:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(images, **kwargs)
