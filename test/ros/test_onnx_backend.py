"""The engine's ONNX Runtime backend: the torch backend's interface and results, the teacher policy, clear errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from surround_depth_ros.engine import DepthEngine, TorchBackend
from surround_depth_ros.onnx_backend import OnnxBackend, OnnxBackendError
from surround_depth_train.export import export_onnx, sidecar_path
from surround_depth_train.export.sidecar import file_sha256
from surround_depth_train.models import create_model, save_model

INPUT = (64, 96)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('onnx_backend')
    torch.manual_seed(0)
    model_file = save_model(root / 'model.pt', create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={},
                            input_size=INPUT)
    onnx_path = export_onnx(model_file, root / 'student.onnx', outputs=['depth', 'confidence'],
                            log=lambda _: None).onnx_path
    return {'model': model_file, 'onnx': onnx_path}


def test_onnx_backend_gives_the_torch_backends_depth_and_confidence(files):
    onnx_backend, torch_backend = OnnxBackend(files['onnx']), TorchBackend(files['model'])
    for batch in (6, 1):
        images = torch.rand(batch, 3, *INPUT)
        depth, conf = onnx_backend.forward(images, confidence=True)
        ref_depth, ref_conf = torch_backend.forward(images, confidence=True)
        assert depth.shape == conf.shape == ref_depth.shape == (batch, 1, *INPUT)
        assert float(((depth - ref_depth).abs() / ref_depth).max()) < 1e-3
        assert float((conf - ref_conf).abs().max()) < 1e-3
    depth, conf = onnx_backend.forward(images)
    assert conf is None and depth.dtype == torch.float32


def test_onnx_backend_info_has_what_the_engine_reads(files):
    info = OnnxBackend(files['onnx']).info
    assert info.name == 'tiny_student_mb' and info.input_size == INPUT and info.depth_range == (0.1, 80.0)
    assert info.has_confidence and not info.is_teacher and info.fully_convolutional is False
    assert info.training_rig is None and info.normalisation['std'] == pytest.approx([0.229, 0.224, 0.225])
    assert {'name', 'input_size', 'depth_range', 'training_rig', 'has_confidence'} <= set(vars(info))


def test_depth_engine_runs_the_onnx_export_like_the_model_file(files):
    rng = np.random.default_rng(0)
    sizes = [(96, 128), (64, 96), (120, 200)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    Ks = [np.array([[0.8 * w, 0.0, (w - 1) / 2], [0.0, 0.8 * w, (h - 1) / 2], [0.0, 0.0, 1.0]]) for h, w in sizes]
    onnx_pred = DepthEngine(files['onnx'], backend='onnxruntime').predict(images, Ks, confidence=True)
    torch_pred = DepthEngine(files['model']).predict(images, Ks, confidence=True)
    for got, ref, size in zip(onnx_pred.depths, torch_pred.depths, sizes):
        assert got.shape == size
        np.testing.assert_allclose(got, ref, rtol=1e-3)
    for got, ref in zip(onnx_pred.confidences, torch_pred.confidences):
        np.testing.assert_allclose(got, ref, atol=1e-3)


def test_a_teacher_export_is_refused_unless_allowed(files, tmp_path):
    onnx_path = tmp_path / 'teacher.onnx'
    shutil.copy(files['onnx'], onnx_path)
    body = json.loads(sidecar_path(files['onnx']).read_text())
    body['model']['name'] = 'depth_anything_tiny_metric'  # what a forced teacher export records
    sidecar_path(onnx_path).write_text(json.dumps(body))
    assert body['onnx_sha256'] == file_sha256(onnx_path)
    with pytest.raises(OnnxBackendError, match='teacher depth_anything_tiny_metric.*allow_teacher: true'):
        OnnxBackend(onnx_path)
    assert OnnxBackend(onnx_path, allow_teacher=True).info.is_teacher


def test_backend_errors_name_the_fix(files, tmp_path):
    backend = OnnxBackend(files['onnx'])
    with pytest.raises(OnnxBackendError, match='resize to 64x96'):
        backend.forward(torch.rand(2, 3, 48, 64))
    lone = tmp_path / 'student.onnx'
    shutil.copy(files['onnx'], lone)
    with pytest.raises(OnnxBackendError, match='no sidecar student.onnx.json.*export it again'):
        OnnxBackend(lone)
    with pytest.raises(OnnxBackendError, match="'GPU' is not an ONNX Runtime execution provider"):
        OnnxBackend(files['onnx'], providers=['GPU'])
