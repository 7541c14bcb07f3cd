"""ONNX export: every student family with and without the bins head, parity with PyTorch in ONNX Runtime at
batch 1 and 6, the sidecar, and the requests that are refused."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from surround_depth_train.export import ExportError, export_onnx, read_sidecar, sidecar_path
from surround_depth_train.export.__main__ import main
from surround_depth_train.export.sidecar import file_sha256
from surround_depth_train.models import create_model, load_model, save_model
from surround_depth_train.models.bins import MetricBins

INPUT = (64, 96)  # (height, width): small, above every student's minimum side
FAMILIES = ('monodepth2', 'hrdepth', 'monovit', 'tiny_student')


def _model_file(path, name, **save_kwargs):
    torch.manual_seed(0)
    return save_model(path, create_model(name), name=name, kwargs={}, input_size=INPUT, **save_kwargs)


def _quiet(_: str) -> None:
    pass


@pytest.mark.parametrize('name', [
    *(pytest.param(f'{family}{suffix}', marks=[pytest.mark.slow] if family == 'monovit' else [])  # MPViT: ~20 s
      for family in FAMILIES for suffix in ('', '_mb')),
    'tiny_student_ab', 'tiny_student_lb'])  # the Table IV heads (AdaBins' transformer, LocalBins)
def test_each_student_family_exports_and_matches_pytorch_at_batch_one_and_six(tmp_path, name):
    model_file = _model_file(tmp_path / 'model.pt', name)
    with_head = name.endswith(('_mb', '_ab', '_lb'))
    outputs = ('depth', 'confidence', 'centers', 'probs') if with_head else ('depth',)
    result = export_onnx(model_file, tmp_path / 'student.onnx', outputs=outputs, log=_quiet)
    assert result.outputs == outputs
    assert set(result.parity) == set(outputs) and all(v['error'] < 1e-3 for v in result.parity.values())
    assert MetricBins.banded_inference is True  # the trace switch is restored

    # An independent check in a plain ONNX Runtime session against the model as deployed (banded path on CPU).
    model = load_model(model_file)[0]
    kwargs = {'depth_only': False, 'confidence': True} if with_head else {'depth_only': True}
    session = ort.InferenceSession(str(result.onnx_path), providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == list(outputs)
    for batch in (1, 6):
        images = torch.rand(batch, 3, *INPUT, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            ref = model(images, **kwargs)
        got = dict(zip(outputs, session.run(None, {'images': images.numpy()})))
        depth = torch.from_numpy(got['depth'])
        assert depth.shape == (batch, 1, *INPUT)
        assert float(((depth - ref.depth).abs() / ref.depth).max()) < 1e-3
        if with_head:
            assert float((torch.from_numpy(got['probs']) - ref.probs).abs().max()) < 1e-3
            assert float((torch.from_numpy(got['confidence']) - ref.confidence).abs().max()) < 1e-3
            assert got['probs'].shape == tuple(ref.probs.shape)
            np.testing.assert_allclose(got['probs'].sum(axis=1), 1.0, atol=1e-4)


def test_an_export_with_the_bins_head_at_half_resolution_matches_that_head_and_says_so(tmp_path):
    from surround_depth_train.models.bins import set_bins_downsample

    model_file = _model_file(tmp_path / 'model.pt', 'tiny_student_mb')
    result = export_onnx(model_file, tmp_path / 'half.onnx', outputs=('depth', 'confidence'), bins_downsample=2,
                         log=_quiet)
    assert read_sidecar(result.onnx_path)['bins_downsample'] == 2
    assert all(v['error'] < 1e-3 for v in result.parity.values())
    model = load_model(model_file)[0].eval()
    images = torch.rand(3, 3, *INPUT, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(str(result.onnx_path), providers=['CPUExecutionProvider'])
    got = torch.from_numpy(session.run(['depth'], {'images': images.numpy()})[0])
    with torch.inference_mode():
        full = model(images, depth_only=True).depth
        half = set_bins_downsample(model, 2)(images, depth_only=True).depth
    assert got.shape == (3, 1, *INPUT)
    assert float(((got - half).abs() / half).max()) < 1e-3
    assert float(((got - full).abs() / full).max()) > 1e-3  # the cheaper head, not the full one


def test_an_export_at_reduced_bins_resolution_refuses_centers_and_plain_students(tmp_path):
    with pytest.raises(ExportError, match='computes depth and confidence only; export centers and probs with '
                                          '--bins-downsample 1'):
        export_onnx(_model_file(tmp_path / 'mb.pt', 'tiny_student_mb'), tmp_path / 'a.onnx',
                    outputs=('depth', 'centers'), bins_downsample=2, log=_quiet)
    with pytest.raises(ExportError, match='tiny_student: bins_downsample 4: the model has no MetricBins head'):
        export_onnx(_model_file(tmp_path / 'plain.pt', 'tiny_student'), tmp_path / 'b.onnx', bins_downsample=4,
                    log=_quiet)
    assert not list(tmp_path.glob('*.onnx'))


def test_sidecar_records_the_model_file_and_the_hash_of_the_onnx_file(tmp_path):
    rig = [{'name': 'front', 'K': [[50.0, 0.0, 47.5], [0.0, 50.0, 31.5], [0.0, 0.0, 1.0]], 'width': 96,
            'height': 64}]
    model_file = _model_file(tmp_path / 'model.pt', 'tiny_student_mb', training_rig=rig)
    result = export_onnx(model_file, tmp_path / 'student.onnx', outputs=['confidence'], max_batch=4, log=_quiet)
    assert result.outputs == ('depth', 'confidence')  # depth is always there
    assert result.sidecar_path == sidecar_path(result.onnx_path) == tmp_path / 'student.onnx.json'
    body = read_sidecar(result.onnx_path)
    assert body['onnx_sha256'] == file_sha256(result.onnx_path)
    assert body['input_size'] == list(INPUT) and body['batch'] == [1, 4] and body['opset'] >= 17
    assert body['outputs'] == ['depth', 'confidence']
    model = body['model']
    assert model['name'] == 'tiny_student_mb' and model['input_size'] == list(INPUT)
    assert model['depth_range'] == [0.1, 80.0] and model['head']['n_bins'] == 16
    assert model['normalisation']['mean'] == pytest.approx([0.485, 0.456, 0.406])
    assert model['training_rig'][0]['name'] == 'front' and model['training_rig'][0]['K'][0][0] == 50.0
    assert model['is_teacher'] is False
    assert body['parity']['depth']['batches'] == [1, 4]


def test_export_refuses_a_teacher_unless_allowed(tmp_path, capsys):
    torch.manual_seed(0)
    model_file = save_model(tmp_path / 'teacher.pt', create_model('depth_anything_tiny_metric'),
                            name='depth_anything_tiny_metric', kwargs={}, input_size=(70, 98))
    with pytest.raises(ExportError, match='teacher.*--allow-teacher'):
        export_onnx(model_file, tmp_path / 'teacher.onnx', log=_quiet)
    assert main(['--model', str(model_file), '--output', str(tmp_path / 'teacher.onnx')]) == 2
    assert '--allow-teacher' in capsys.readouterr().err
    assert not (tmp_path / 'teacher.onnx').exists()


def test_export_refuses_bins_outputs_for_a_plain_student_and_unknown_outputs(tmp_path):
    model_file = _model_file(tmp_path / 'model.pt', 'tiny_student')
    with pytest.raises(ExportError, match='no bins head.*--outputs depth'):
        export_onnx(model_file, tmp_path / 'a.onnx', outputs=['depth', 'confidence'], log=_quiet)
    with pytest.raises(ExportError, match="unknown outputs \\['disparity'\\]"):
        export_onnx(model_file, tmp_path / 'a.onnx', outputs=['disparity'], log=_quiet)
    with pytest.raises(ExportError, match='opset 16 is too old'):
        export_onnx(model_file, tmp_path / 'a.onnx', opset=16, log=_quiet)
    with pytest.raises(ExportError, match='should end in .onnx'):
        export_onnx(model_file, tmp_path / 'a.pt', log=_quiet)


def test_a_failed_parity_check_writes_nothing(tmp_path):
    model_file = _model_file(tmp_path / 'model.pt', 'tiny_student_mb')
    with pytest.raises(ExportError, match='disagrees with PyTorch.*nothing was written'):
        export_onnx(model_file, tmp_path / 'student.onnx', tolerance=1e-15, log=_quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.pt']


def test_command_line_exports_and_prints_the_parity_figures(tmp_path, capsys):
    model_file = _model_file(tmp_path / 'model.pt', 'tiny_student_mb')
    out = tmp_path / 'deploy' / 'student.onnx'
    assert main(['--model', str(model_file), '--output', str(out), '--outputs', 'depth,probs', '--opset', '18']) == 0
    printed = capsys.readouterr().out
    assert 'depth      relative' in printed and 'probs      absolute' in printed
    body = json.loads((out.parent / 'student.onnx.json').read_text())
    assert body['outputs'] == ['depth', 'probs'] and body['opset'] == 18
    assert main(['--model', str(tmp_path / 'missing.pt'), '--output', str(out)]) == 2
    assert 'no model file' in capsys.readouterr().err
