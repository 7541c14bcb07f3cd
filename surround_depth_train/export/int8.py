"""int8 export: the fp32 ONNX graph statically quantised (QDQ, per-channel weights) with ONNX Runtime's quantiser.

    fp32 export (self-checked against PyTorch) -> quant_pre_process (shape inference, graph clean-up)
        -> quantize_static: QDQ pairs around Conv / MatMul / Gemm, int8 weights per output channel (symmetric),
           int8 activations per tensor, their ranges from the calibration camera sets (:mod:`.calibration`)
        -> check: int8 against fp32 ONNX Runtime on held-out camera sets; nothing written when above tolerance.

What stays fp32 (:data:`KEEP_FP32`, regular expressions over the node names of the traced graph). Measured on the
light student shipped at the time (``timm_student_mb``, MobileNetV2, 160 x 96) against its own fp32 graph,
quantised with minmax on 8 SurroundSim train camera sets and compared on 3 others: relative depth difference
median / p95:

==========================================================  ==============
kept fp32                                                   median / p95
==========================================================  ==============
nothing (every Conv / MatMul int8)                          4.5 % / 14.6 %
the bins head                                               4.1 % / 13.2 %
the bins head, the disparity convolution                    4.1 % / 13.2 %
+ the depthwise convolutions (``conv_dw``)                  2.9 % / 10.9 %
+ depthwise, percentile calibration                         2.7 % / 9.5 %
the whole encoder (only the decoder int8)                   0.7 % / 1.8 %
==========================================================  ==============

Per encoder block (one at a time kept fp32) no single block stands out (3.4-4.3 %): the loss is spread over
MobileNetV2's depthwise layers, whose per-tensor activation ranges are known to quantise badly. So:

- the bins head (``/model/metric_bins/``): its 1x1 layers feed the log-binomial logits (temperature down to 0.02)
  and the attractors (``alpha = 300`` on center differences), the same reasons as for bf16
  (:mod:`surround_depth_train.models.reduced_precision`); it is a small share of the arithmetic;
- the disparity convolution (``dispconv``): one output channel through a sigmoid into ``1/depth``, where one int8
  step moves far depth; no measurable cost either way on the student above, kept for the plain students whose depth
  is that output;
- depthwise convolutions (``conv_dw``, timm's MobileNet / EfficientNet blocks): the largest measured loss, little
  arithmetic. ResNet encoders (Monodepth2) have none.

Only Conv, MatMul and Gemm are quantised: they carry the arithmetic, and ONNX Runtime's CPU kernels fuse their
QDQ pairs into integer convolutions (VNNI where the CPU has it); element-wise operations between them stay fp32
rather than paying a quantise / dequantise pair each.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from surround_depth_train.export.calibration import CalibrationSet
    from surround_depth_train.export.onnx_export import ExportResult

__all__ = ['KEEP_FP32', 'QUANTIZED_OPS', 'CALIBRATION_METHODS', 'export_int8', 'quantize_int8',
           'depth_difference', 'excluded_nodes']

KEEP_FP32 = (r'^/model/metric_bins/', r'^/model/decoder/(convs\.)?disp_?conv', r'/conv_dw/')
QUANTIZED_OPS = ('Conv', 'MatMul', 'Gemm')
CALIBRATION_METHODS = ('minmax', 'percentile', 'entropy')


def excluded_nodes(model: Any, keep_fp32: Sequence[str]) -> list[str]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) that one of the ``keep_fp32`` regular expressions
    finds (``re.search``, case-insensitive: HR-Depth names its disparity convolution ``dispConvScale0``)."""
    patterns = [re.compile(p, re.IGNORECASE) for p in keep_fp32]
    return [node.name for node in model.graph.node if any(p.search(node.name) for p in patterns)]


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of camera sets."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]):
        self._items = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_int8(fp32_path: str | os.PathLike, output: str | os.PathLike, batches: Sequence[np.ndarray], *,
                  input_name: str = 'images', keep_fp32: Sequence[str] = KEEP_FP32, method: str = 'minmax',
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Quantise the fp32 graph at ``fp32_path`` into ``output`` (not atomic: write to a temporary path).

    Returns:
        What the sidecar records: format, weight / activation types, method, quantised op types, the kept
        prefixes and how many nodes they cover.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f'calibration method {method!r} is not one of {CALIBRATION_METHODS}')
    with tempfile.TemporaryDirectory(prefix='int8_') as tmp:
        prepared = Path(tmp) / 'prepared.onnx'
        # ONNX Runtime's symbolic shape inference gives up on the traced bins head and then dumps the model into
        # the working directory; ONNX's own shape inference covers what the quantiser needs.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        exclude = excluded_nodes(onnx.load(str(prepared)), keep_fp32)
        log(f'quantising Conv/MatMul/Gemm to int8 (QDQ, per-channel weights, {method} calibration on '
            f'{len(batches)} camera sets); {len(exclude)} nodes under {", ".join(keep_fp32) or "nothing"} stay fp32')
        quantize_static(str(prepared), str(output), _Reader(input_name, batches), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        calibrate_method={'minmax': CalibrationMethod.MinMax,
                                          'percentile': CalibrationMethod.Percentile,
                                          'entropy': CalibrationMethod.Entropy}[method],
                        extra_options={'WeightSymmetric': True, 'ActivationSymmetric': False})
    return {'format': 'QDQ', 'weights': 'int8, symmetric, per output channel',
            'activations': 'int8, per tensor', 'calibration_method': method,
            'quantized_ops': list(QUANTIZED_OPS), 'kept_fp32': list(keep_fp32), 'kept_fp32_nodes': len(exclude)}


def depth_difference(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, float]:
    """``|candidate - reference| / reference`` over all pixels: ``median``, ``p95``, ``max``."""
    rel = np.concatenate([(np.abs(c.astype(np.float64) - r) / np.maximum(np.abs(r), 1e-6)).ravel()
                          for r, c in zip(reference, candidate)])
    return {'median': float(np.median(rel)), 'p95': float(np.percentile(rel, 95)), 'max': float(rel.max())}


def export_int8(model_path: str | os.PathLike, output: str | os.PathLike, calibration: CalibrationSet, *,
                outputs: Sequence[str] = ('depth',), opset: int | None = None, max_batch: int | None = None,
                allow_teacher: bool = False, tolerance: float = 1e-3, int8_tolerance: float = 0.05,
                method: str = 'minmax', keep_fp32: Sequence[str] = KEEP_FP32, bins_downsample: int = 1,
                log: Callable[[str], None] = print) -> ExportResult:
    """Export ``model_path`` as an int8 ``output`` (``.onnx``) with its sidecar (module docstring).

    Args:
        calibration: camera sets to calibrate on and, held out, to check on (:mod:`.calibration`); recorded in the
            sidecar's ``calibration``.
        tolerance: of the fp32 export's self-check against PyTorch.
        int8_tolerance: the largest median relative depth difference of int8 against fp32 on the check sets.
        method, keep_fp32: calibration method and the node-name prefixes that stay fp32.
        bins_downsample: the bins head's resolution factor (:func:`~.onnx_export.export_onnx`).

    Raises:
        ExportError: what :func:`export_onnx` raises, camera sets larger than ``max_batch``, or an int8 graph
            that differs from fp32 beyond ``int8_tolerance`` (nothing is written then).
    """
    from surround_depth_train.atomic import atomic_write
    from surround_depth_train.export.onnx_export import DEFAULT_MAX_BATCH, MIN_OPSET, ExportError, export_onnx
    from surround_depth_train.export.sidecar import read_sidecar, write_sidecar

    output = Path(output)
    if output.suffix != '.onnx':
        raise ExportError(f'the output {output} should end in .onnx (the sidecar is written beside it as '
                          f'{output.name}.json)')
    max_batch = DEFAULT_MAX_BATCH if max_batch is None else int(max_batch)
    cameras = max(b.shape[0] for b in (*calibration.batches, *calibration.check))
    if cameras > max_batch:
        raise ExportError(f'the calibration camera sets have {cameras} cameras, more than --max-batch {max_batch}; '
                          f'raise --max-batch')
    with tempfile.TemporaryDirectory(prefix='export_int8_') as tmp:
        fp32 = export_onnx(model_path, Path(tmp) / 'fp32.onnx', outputs=outputs,
                           opset=MIN_OPSET if opset is None else opset, max_batch=max_batch,
                           allow_teacher=allow_teacher, tolerance=tolerance, bins_downsample=bins_downsample,
                           log=log)
        int8_path = Path(tmp) / 'int8.onnx'
        quantization = quantize_int8(fp32.onnx_path, int8_path, calibration.batches, keep_fp32=keep_fp32,
                                     method=method, log=log)
        difference = _compare(fp32.onnx_path, int8_path, calibration.check)
        ok = difference['median'] <= int8_tolerance
        log(f'  int8 vs fp32 depth on {len(calibration.check)} held-out camera sets: relative difference median '
            f'{difference["median"]:.2e}, p95 {difference["p95"]:.2e}, max {difference["max"]:.2e}  '
            f'{"ok" if ok else "ABOVE"} (tolerance {int8_tolerance:g} on the median)')
        if not ok:
            raise ExportError(f'the int8 graph differs from fp32 by a median {difference["median"]:.3g} of the depth, '
                              f'above {int8_tolerance:g}; nothing was written. Calibrate on more or more typical '
                              f'camera sets (--calibration-samples, data.* overrides), try --calibration-method '
                              f'percentile, or deploy fp32')
        fields = {k: v for k, v in read_sidecar(fp32.onnx_path).items()
                  if k not in ('format', 'format_version', 'onnx_sha256')}
        with atomic_write(output, 'wb') as f:
            f.write(int8_path.read_bytes())
    fields['precision'] = 'int8'
    fields['int8'] = {**quantization, 'check': {**difference, 'metric': 'relative depth difference to fp32',
                                                'tolerance': int8_tolerance, 'sets': len(calibration.check)}}
    fields['calibration'] = calibration.record
    sidecar = write_sidecar(output, fields)
    log(f'wrote {output} ({output.stat().st_size / 1e6:.1f} MB) and {sidecar.name}')
    return type(fp32)(onnx_path=output, sidecar_path=sidecar, outputs=fp32.outputs, parity=fp32.parity)


def _compare(fp32_path: Path, int8_path: Path, sets: Sequence[np.ndarray]) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = [ort.InferenceSession(str(p), options, providers=['CPUExecutionProvider'])
                for p in (fp32_path, int8_path)]
    name = sessions[0].get_inputs()[0].name
    reference = [sessions[0].run(['depth'], {name: s})[0] for s in sets]
    candidate = [sessions[1].run(['depth'], {name: s})[0] for s in sets]
    return depth_difference(reference, candidate)
