"""Export a model file to ONNX for deployment, check the graph against PyTorch, and write its sidecar.

The graph takes ``images`` ``[B, 3, H, W]`` float RGB in ``[0, 1]`` (normalisation is inside), ``H x W`` the model
file's input size and ``B`` dynamic, and returns ``depth`` ``[B, 1, H, W]`` metres and, on request, the bins
head's ``confidence`` ``[B, 1, H, W]`` (``1 - H(P) / log K``, what the node's engine computes), ``centers`` and
``probs`` ``[B, K, H, W]``.

It is traced through the bins head's whole-tensor path (``MetricBins.banded_inference = False``): the banded CPU
path is image-by-image Python loops that a trace would unroll for one batch size. Then the export checks itself:
ONNX Runtime (CPU, all graph optimisations, as deployed) and PyTorch (the deployed path: banded on CPU) run the
same images at batch 1 and at the largest batch, and the largest errors are printed and must stay within the
tolerance: relative error for depth, absolute for probabilities and confidence, relative to the maximum depth for
bin centers (their fp32 rounding in the attractors is absolute, so a center near zero has no useful relative
error). Nothing is written when the check fails; the ``.onnx`` file and its sidecar are written atomically.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from surround_depth_train.atomic import atomic_write
from surround_depth_train.export.sidecar import OUTPUT_NAMES, file_sha256, write_sidecar
from surround_depth_train.models.bins import MetricBins, set_bins_downsample
from surround_depth_train.models.modelfile import ModelInfo, load_model

__all__ = ['MIN_OPSET', 'DEFAULT_MAX_BATCH', 'ExportError', 'ExportResult', 'DeployGraph', 'whole_tensor_bins',
           'export_onnx', 'parity_errors']

MIN_OPSET = 17
DEFAULT_MAX_BATCH = 6  # one six-camera set per forward pass
INPUT_NAME = 'images'
BINS_OUTPUTS = ('confidence', 'centers', 'probs')


class ExportError(ValueError):
    """The model cannot be exported as asked, or the exported graph disagrees with PyTorch."""


@dataclass
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    outputs: tuple[str, ...]
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)  # output -> {'metric', 'error', 'batches'}


class DeployGraph(nn.Module):
    """What the exported graph computes: ``images -> (depth, [confidence], [centers], [probs])`` (outputs in
    :data:`OUTPUT_NAMES` order), the model called as the engine calls it (``depth_only`` unless bins are asked for).
    """

    def __init__(self, model: nn.Module, outputs: Sequence[str]):
        super().__init__()
        self.model = model
        self.outputs = tuple(outputs)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        kwargs: dict[str, bool] = {'depth_only': not any(o in self.outputs for o in ('centers', 'probs'))}
        if 'confidence' in self.outputs:
            kwargs['confidence'] = True
        out = self.model(images, **kwargs)
        return tuple(getattr(out, name) for name in self.outputs)


@contextlib.contextmanager
def whole_tensor_bins(model: nn.Module) -> Iterator[None]:
    """Run every MetricBins head with whole-tensor operations (traceable) inside the block, restored afterwards.

    The switch is a class attribute (all heads in the process), so this is not for use while other threads infer.
    """
    heads = [m for m in model.modules() if isinstance(m, MetricBins)]
    own = [(head, head.__dict__['banded_inference']) for head in heads if 'banded_inference' in head.__dict__]
    previous = MetricBins.banded_inference
    MetricBins.banded_inference = False
    for head, _ in own:
        head.banded_inference = False
    try:
        yield
    finally:
        MetricBins.banded_inference = previous
        for head, value in own:
            head.banded_inference = value


def _check_outputs(outputs: Sequence[str], has_bins: bool, name: str) -> tuple[str, ...]:
    requested = [o.strip() for o in outputs if o.strip()]
    unknown = sorted(set(requested) - set(OUTPUT_NAMES))
    if unknown:
        raise ExportError(f'unknown outputs {unknown}; choose from {",".join(OUTPUT_NAMES)}')
    if 'depth' not in requested:
        requested.insert(0, 'depth')  # depth is what every runtime reads
    need_bins = [o for o in requested if o in BINS_OUTPUTS]
    if need_bins and not has_bins:
        raise ExportError(f'{name} has no bins head, so it has no {",".join(need_bins)}; export a "_mb" student or '
                          f'use --outputs depth')
    return tuple(o for o in OUTPUT_NAMES if o in requested)


def parity_errors(reference: dict[str, Tensor], candidate: dict[str, Tensor],
                  max_depth: float) -> dict[str, tuple[str, float]]:
    """Largest error per output: ``(metric, value)``; see the module docstring for the metrics."""
    errors: dict[str, tuple[str, float]] = {}
    for name, ref in reference.items():
        ref = ref.double()
        diff = (candidate[name].double() - ref).abs()
        if name == 'depth':
            errors[name] = ('relative', float((diff / ref.abs().clamp_min(1e-6)).max()))
        elif name == 'centers':
            errors[name] = ('absolute / max depth', float(diff.max()) / max_depth)
        else:
            errors[name] = ('absolute', float(diff.max()))
    return errors


@contextlib.contextmanager
def _restored(setter: Callable[[Any], None], value: Any) -> Iterator[None]:
    """Call ``setter(value)`` on the way out of the block."""
    try:
        yield
    finally:
        setter(value)


def _trace(graph: DeployGraph, sample: Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    axes = {name: {0: 'batch'} for name in (INPUT_NAME, *graph.outputs)}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with warnings.catch_warnings(), _restored(torch.backends.mha.set_fastpath_enabled, fastpath):
        # The tracer warns at every Python-level shape test: they are expected, the input size is fixed by design
        # and the dynamic batch is checked below by running batch 1 and the largest batch.
        warnings.simplefilter('ignore')
        # nn.TransformerEncoderLayer's fused inference kernel (AdaBins' head) has no ONNX form; its plain
        # operations do.
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad():
            torch.onnx.export(graph, (sample,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=list(graph.outputs), dynamic_axes=axes, do_constant_folding=True)
    return buffer.getvalue()


def _check_graph(blob: bytes, graph: DeployGraph, sample: Tensor, batches: Sequence[int],
                 max_depth: float) -> dict[str, dict[str, Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(blob, options, providers=['CPUExecutionProvider'])
    worst: dict[str, dict[str, Any]] = {}
    for batch in batches:
        images = sample[:batch]  # different random images: a mix-up between the batch's images would show
        with torch.inference_mode():
            reference = dict(zip(graph.outputs, graph(images)))
        ran = session.run(list(graph.outputs), {INPUT_NAME: images.numpy()})
        candidate = {name: torch.from_numpy(value) for name, value in zip(graph.outputs, ran)}
        for name in graph.outputs:
            if tuple(candidate[name].shape) != tuple(reference[name].shape):
                raise ExportError(f'ONNX Runtime returned {name} of shape {tuple(candidate[name].shape)} for batch '
                                  f'{batch}, PyTorch {tuple(reference[name].shape)}: the batch axis is not dynamic in '
                                  f'the traced graph')
        for name, (metric, error) in parity_errors(reference, candidate, max_depth).items():
            entry = worst.setdefault(name, {'metric': metric, 'error': 0.0, 'batches': []})
            entry['error'] = max(entry['error'], error)
            entry['batches'].append(batch)
    return worst


def export_onnx(model_path: str | os.PathLike, output: str | os.PathLike, *, outputs: Sequence[str] = ('depth',),
                opset: int = MIN_OPSET, max_batch: int = DEFAULT_MAX_BATCH, allow_teacher: bool = False,
                tolerance: float = 1e-3, seed: int = 0, bins_downsample: int = 1,
                log: Callable[[str], None] = print) -> ExportResult:
    """Export the model in ``model_path`` to ``output`` (``.onnx``) and its sidecar ``output + '.json'``.

    Args:
        model_path: a model file (``save_model``) or training checkpoint.
        output: the ``.onnx`` path.
        outputs: out of ``depth, confidence, centers, probs`` (depth is always included).
        opset: ONNX opset, at least :data:`MIN_OPSET`.
        max_batch: the largest batch (cameras per forward pass) the export is checked for and the sidecar allows.
        allow_teacher: export a teacher model (refused otherwise: it is not meant for the car).
        tolerance: the largest error the self-check accepts (see the module docstring).
        seed: of the check's random images.
        bins_downsample: the MetricBins head computes depth at ``1 / bins_downsample`` of the input resolution and
            upsamples it (:func:`~surround_depth_train.models.bins.set_bins_downsample`; 1, 2 or 4; depth and
            confidence outputs only); recorded in the sidecar.
        log: where progress and the parity figures go.

    Raises:
        ExportError: a bad request (teacher, outputs the model lacks, opset) or a failed self-check.
    """
    import onnx

    if int(opset) < MIN_OPSET:
        raise ExportError(f'opset {opset} is too old: the export needs opset {MIN_OPSET} or newer')
    if int(max_batch) < 1:
        raise ExportError(f'max_batch must be at least 1, got {max_batch}')
    output = Path(output)
    if output.suffix != '.onnx':
        raise ExportError(f'the output {output} should end in .onnx (the sidecar is written beside it as '
                          f'{output.name}.json)')
    model, meta = load_model(model_path)
    info = ModelInfo.from_file_dict(meta)
    name = info.name
    if info.is_teacher and not allow_teacher:
        raise ExportError(f'{model_path} holds the teacher {name}, tens of times slower than a student and not meant '
                          f'for deployment; export a distilled student, or pass --allow-teacher to export it anyway')
    outputs = _check_outputs(outputs, bool(getattr(model, 'has_bins', False)), name)
    if bins_downsample != 1 and any(o in outputs for o in ('centers', 'probs')):
        raise ExportError(f'--bins-downsample {bins_downsample} computes depth and confidence only; export centers '
                          f'and probs with --bins-downsample 1')
    try:
        set_bins_downsample(model, bins_downsample)
    except ValueError as exc:
        raise ExportError(f'{name}: {exc}') from None
    height, width = info.input_size
    max_depth = info.depth_range[1]
    generator = torch.Generator().manual_seed(seed)
    sample = torch.rand(max(2, int(max_batch)), 3, height, width, generator=generator)
    graph = DeployGraph(model, outputs).eval()  # eval() also sets the wrapped model (export restores this mode)

    head = '' if bins_downsample == 1 else f', bins at 1/{bins_downsample}'
    log(f'tracing {name} at {height}x{width} (whole-tensor bins path{head}), outputs {",".join(outputs)}, '
        f'opset {opset}')
    try:
        with whole_tensor_bins(model):
            blob = _trace(graph, sample[:2], int(opset))
    except (RuntimeError, TypeError, ValueError) as exc:
        why = (' The teacher\'s resize to multiples of 14 and its ViT position-embedding interpolation compute '
               'with sizes that the TorchScript tracer turns into tensors: teachers do not export yet.'
               if info.is_teacher else '')
        raise ExportError(f'tracing {name} for ONNX failed: {type(exc).__name__}: {str(exc).splitlines()[0]}.'
                          f'{why}') from exc
    onnx.checker.check_model(onnx.load_from_string(blob))
    batches = sorted({1, int(max_batch)})
    log(f'checking ONNX Runtime against PyTorch at batch {" and ".join(map(str, batches))}')
    parity = _check_graph(blob, graph, sample, batches, max_depth)
    failed = []
    for out_name, entry in parity.items():
        ok = entry['error'] <= tolerance
        log(f'  {out_name:<10s} {entry["metric"]:<22s} error {entry["error"]:.2e}  '
            f'{"ok" if ok else "ABOVE"} (tolerance {tolerance:g})')
        if not ok:
            failed.append(out_name)
    if failed:
        raise ExportError(f'the exported graph disagrees with PyTorch on {failed} beyond {tolerance:g}; nothing was '
                          f'written. Check for an operation the trace could not follow (a data-dependent branch)')

    with atomic_write(output, 'wb') as f:
        f.write(blob)
    import onnxruntime

    sidecar = write_sidecar(output, {
        'input': INPUT_NAME,
        'input_size': [height, width],
        'batch': [1, int(max_batch)],
        'outputs': list(outputs),
        'opset': int(opset),
        'precision': 'fp32',
        'bins_downsample': int(bins_downsample),
        'model': info.to_dict(),
        'parity': {k: {**v, 'tolerance': tolerance} for k, v in parity.items()},
        'source': {'model_file': str(Path(model_path).resolve()), 'model_sha256': file_sha256(model_path),
                   'torch': torch.__version__, 'onnx': onnx.__version__, 'onnxruntime': onnxruntime.__version__},
    })
    log(f'wrote {output} ({output.stat().st_size / 1e6:.1f} MB) and {sidecar.name}')
    return ExportResult(onnx_path=output, sidecar_path=sidecar, outputs=outputs, parity=parity)
