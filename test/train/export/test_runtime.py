"""OnnxDepthModel: ONNX Runtime with I/O bound per batch size, the sidecar checks, execution providers."""
from __future__ import annotations

import json
import shutil

import onnxruntime as ort
import pytest
import torch

from surround_depth_train.export import export_onnx, sidecar_path, write_sidecar
from surround_depth_train.export.runtime import OnnxDepthModel, OnnxRuntimeError
from surround_depth_train.models import create_model, load_model, save_model

INPUT = (64, 96)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A tiny student with bins exported twice: depth + confidence, and depth alone."""
    root = tmp_path_factory.mktemp('runtime')
    torch.manual_seed(0)
    model_file = save_model(root / 'model.pt', create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={},
                            input_size=INPUT)
    with_conf = export_onnx(model_file, root / 'conf' / 'student.onnx', outputs=['depth', 'confidence'], log=_quiet)
    depth_only = export_onnx(model_file, root / 'depth' / 'student.onnx', log=_quiet)
    return {'model_file': model_file, 'conf': with_conf.onnx_path, 'depth': depth_only.onnx_path,
            'model': load_model(model_file)[0]}


def _reference(model, images):
    with torch.inference_mode():
        out = model(images, depth_only=True, confidence=True)
    return out.depth, out.confidence


def _rel(a, b):
    return float(((a - b).abs() / b.abs()).max())


def test_runtime_matches_pytorch_as_the_batch_size_changes_and_comes_back(exported):
    runtime = OnnxDepthModel(exported['conf'])
    for batch in (1, 6, 3, 1, 6):
        images = torch.rand(batch, 3, *INPUT)
        depth, conf = runtime.forward(images, confidence=True)
        ref_depth, ref_conf = _reference(exported['model'], images)
        assert depth.shape == conf.shape == (batch, 1, *INPUT)
        assert _rel(depth, ref_depth) < 1e-3 and float((conf - ref_conf).abs().max()) < 1e-3
    assert sorted(runtime._bindings) == [(1, ('depth', 'confidence')), (3, ('depth', 'confidence')),
                                         (6, ('depth', 'confidence'))]  # one binding per batch size, reused


def test_a_reused_input_buffer_is_bound_once_and_read_afresh_each_frame(exported):
    runtime = OnnxDepthModel(exported['depth'])
    buffer = torch.rand(2, 3, *INPUT)
    first, _ = runtime.forward(buffer)
    buffer.copy_(torch.rand(2, 3, *INPUT))  # the engine refills one buffer in place
    second, _ = runtime.forward(buffer)
    assert runtime._bindings[(2, ('depth',))].input_binds == 1
    assert _rel(second, _reference(exported['model'], buffer)[0]) < 1e-3
    assert not torch.equal(first, second)


def test_results_are_not_overwritten_by_the_next_frame(exported):
    runtime = OnnxDepthModel(exported['depth'])
    images = torch.rand(2, 3, *INPUT)
    depth, conf = runtime.forward(images)
    kept = depth.clone()
    runtime.forward(torch.rand(2, 3, *INPUT))
    assert conf is None and torch.equal(depth, kept)


def test_non_contiguous_and_double_inputs_are_accepted(exported):
    runtime = OnnxDepthModel(exported['depth'])
    images = torch.rand(2, *INPUT, 3).permute(0, 3, 1, 2)  # channels-last view
    ref = _reference(exported['model'], images.contiguous())[0]
    assert _rel(runtime.forward(images)[0], ref) < 1e-3
    assert _rel(runtime.forward(images.double())[0], ref) < 1e-3


def test_bad_images_get_errors_that_name_the_fix(exported):
    runtime = OnnxDepthModel(exported['depth'])
    with pytest.raises(OnnxRuntimeError, match='resize to 64x96'):
        runtime.forward(torch.rand(1, 3, 32, 48))
    with pytest.raises(OnnxRuntimeError, match='batch 7 is outside the exported range 1..6; re-export with '
                                               '--max-batch 7'):
        runtime.forward(torch.rand(7, 3, *INPUT))
    with pytest.raises(OnnxRuntimeError, match='divide uint8 by 255'):
        runtime.forward(torch.zeros(1, 3, *INPUT, dtype=torch.uint8))
    with pytest.raises(OnnxRuntimeError, match='exported without the confidence output; re-export with --outputs '
                                               'depth,confidence'):
        runtime.forward(torch.rand(1, 3, *INPUT), confidence=True)


def test_a_missing_sidecar_is_an_error_that_says_to_re_export(exported, tmp_path):
    lone = tmp_path / 'lone.onnx'
    shutil.copy(exported['depth'], lone)
    with pytest.raises(OnnxRuntimeError, match='no sidecar lone.onnx.json.*python -m surround_depth_train.export'):
        OnnxDepthModel(lone)
    with pytest.raises(OnnxRuntimeError, match='does not exist'):
        OnnxDepthModel(tmp_path / 'absent.onnx')


def test_a_sidecar_from_another_export_is_refused(exported, tmp_path):
    onnx_path = tmp_path / 'student.onnx'
    shutil.copy(exported['conf'], onnx_path)
    shutil.copy(sidecar_path(exported['depth']), sidecar_path(onnx_path))  # the other export's sidecar
    with pytest.raises(OnnxRuntimeError, match='written for another student.onnx.*export it again'):
        OnnxDepthModel(onnx_path)


def test_a_sidecar_whose_input_size_disagrees_with_the_graph_is_refused(exported, tmp_path):
    onnx_path = tmp_path / 'student.onnx'
    shutil.copy(exported['depth'], onnx_path)
    body = json.loads(sidecar_path(exported['depth']).read_text())
    body['input_size'] = [32, 48]
    sidecar_path(onnx_path).write_text(json.dumps(body))
    with pytest.raises(OnnxRuntimeError, match=r'graph input \[32, 48\] but the model \[64, 96\]; re-export'):
        OnnxDepthModel(onnx_path)
    body['input_size'] = body['model']['input_size'] = [32, 48]
    sidecar_path(onnx_path).write_text(json.dumps(body))
    with pytest.raises(OnnxRuntimeError, match=r'takes input of shape \[.*64, 96\], the sidecar says \[B, 3, 32, 48\]'):
        OnnxDepthModel(onnx_path)


def _unavailable_provider() -> str:
    missing = [p for p in ('CUDAExecutionProvider', 'TensorrtExecutionProvider', 'DmlExecutionProvider')
               if p not in ort.get_available_providers()]
    if not missing:
        pytest.skip('every GPU provider is available here')
    return missing[0]


def test_an_unavailable_provider_is_an_error_unless_the_fallback_is_allowed(exported):
    provider = _unavailable_provider()
    with pytest.raises(OnnxRuntimeError, match=f'{provider} is not available.*allow_provider_fallback'):
        OnnxDepthModel(exported['depth'], providers=[provider])
    with pytest.warns(RuntimeWarning, match=f'{provider} is not available.*falling back to CPUExecutionProvider'):
        runtime = OnnxDepthModel(exported['depth'], providers=[provider], allow_fallback=True)
    assert runtime.providers == ('CPUExecutionProvider',) and runtime.device == 'cpu'
    assert runtime.forward(torch.rand(1, 3, *INPUT))[0].shape == (1, 1, *INPUT)
    with pytest.raises(OnnxRuntimeError, match="'CUDAProvider' is not an ONNX Runtime execution provider"):
        OnnxDepthModel(exported['depth'], providers=['CUDAProvider'], allow_fallback=True)


def test_threads_and_optimisation_level_reach_the_session(exported):
    runtime = OnnxDepthModel(exported['depth'], threads=1, optimization_level='basic')
    options = runtime.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with pytest.raises(OnnxRuntimeError, match="optimization_level 'fast' is not one of"):
        OnnxDepthModel(exported['depth'], optimization_level='fast')


def test_bin_centers_and_probabilities_come_out_at_every_optimisation_level(exported, tmp_path):
    # Without graph optimisation ONNX Runtime keeps the exporter's symbolic output dimensions: the runtime sizes
    # its bound outputs from the sidecar instead.
    result = export_onnx(exported['model_file'], tmp_path / 'bins.onnx', outputs=['centers', 'probs'], log=_quiet)
    images = torch.rand(2, 3, *INPUT)
    with torch.inference_mode():
        ref = exported['model'](images)
    for level in ('disable', 'all'):
        out = OnnxDepthModel(result.onnx_path, optimization_level=level).run(images, ('probs', 'centers', 'depth'))
        assert out['probs'].shape == out['centers'].shape == (2, 16, *INPUT)
        assert float((out['probs'] - ref.probs).abs().max()) < 1e-3
        assert float((out['centers'] - ref.centers).abs().max()) < 1e-3 * 80.0
        assert _rel(out['depth'], ref.depth) < 1e-3


def test_a_damaged_onnx_file_with_a_matching_sidecar_is_a_clear_error(exported, tmp_path):
    onnx_path = tmp_path / 'student.onnx'
    onnx_path.write_bytes(exported['depth'].read_bytes()[:1000])  # truncated, e.g. an interrupted copy
    body = json.loads(sidecar_path(exported['depth']).read_text())
    write_sidecar(onnx_path, {k: v for k, v in body.items() if k not in ('format', 'format_version', 'onnx_sha256')})
    with pytest.raises(OnnxRuntimeError, match='ONNX Runtime cannot open .*re-export it'):
        OnnxDepthModel(onnx_path)
