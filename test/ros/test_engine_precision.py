"""DepthEngine precision on the CPU: bf16 where the CPU has native bf16 (refused elsewhere), int8 only as an ONNX
model through the onnxruntime backend, and the bins head at reduced resolution (``bins_downsample``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from surround_depth_ros.engine import DepthEngine, EngineError
from surround_depth_train.models import create_model, reduced_precision, save_model

INPUT = (64, 96)
X86_FLAGS = 'fpu sse2 avx2 avx512f avx512bw avx512_vnni'


@pytest.fixture(scope='module')
def student_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('engine_precision') / 'tiny.pt'
    save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=INPUT)
    return path


@pytest.fixture
def cpu_flags(tmp_path, monkeypatch):
    """Point the engine's native-bf16 check at a cpuinfo file with the given flags."""
    def write(flags: str):
        path = tmp_path / 'cpuinfo'
        path.write_text(f'processor\t: 0\nflags\t\t: {flags}\n\n')
        monkeypatch.setattr(reduced_precision, 'CPUINFO', path)
    return write


def _camera_set(seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (*INPUT, 3), dtype=np.uint8) for _ in range(6)]
    K = np.array([[80.0, 0, 47.5], [0, 80.0, 31.5], [0, 0, 1]])
    return images, [K] * 6


def test_engine_refuses_bf16_on_a_cpu_without_native_bf16(student_file, cpu_flags):
    cpu_flags(X86_FLAGS)
    with pytest.raises(EngineError, match='native bf16.*precision: fp32'):
        DepthEngine(student_file, precision='bf16')


def test_engine_runs_bf16_on_a_cpu_with_avx512_bf16_within_tolerance_of_fp32(student_file, cpu_flags):
    cpu_flags(X86_FLAGS + ' avx512_bf16')
    images, K = _camera_set()
    fp32 = [d.copy() for d in DepthEngine(student_file).predict(images, K, confidence=True).depths]
    bf16 = DepthEngine(student_file, precision='bf16')
    pred = bf16.predict(images, K, confidence=True)
    assert 'metric_bins' in bf16.backend.model.islands
    assert pred.confidences is not None and all(c.dtype == np.float32 for c in pred.confidences)
    relative = np.abs(np.stack(pred.depths) - np.stack(fp32)) / np.stack(fp32)
    assert relative.max() < 5e-3


def test_engine_says_int8_runs_through_an_onnx_export(student_file):
    with pytest.raises(EngineError, match='export --int8.*backend: onnxruntime'):
        DepthEngine(student_file, precision='int8')


@pytest.fixture(scope='module')
def int8_file(tmp_path_factory, student_file):
    from surround_depth_train.export.calibration import calibration_from_dataset
    from surround_depth_train.export.int8 import export_int8

    out = tmp_path_factory.mktemp('engine_int8')
    calibration = calibration_from_dataset([f'data.cache_dir={out / "cache"}'], input_size=INPUT, samples=1,
                                           check_samples=1)
    return export_int8(student_file, out / 'tiny.int8.onnx', calibration, log=lambda _: None).onnx_path


def test_engine_runs_an_int8_export_through_onnxruntime_close_to_fp32(student_file, int8_file):
    images, K = _camera_set()
    fp32 = np.stack(DepthEngine(student_file).predict(images, K).depths)
    engine = DepthEngine(int8_file, backend='onnxruntime', precision='int8')
    depth = np.stack(engine.predict(images, K).depths)
    assert engine.backend.precision == 'int8'
    assert np.median(np.abs(depth - fp32) / fp32) < 0.05


def test_engine_asks_for_the_precision_an_onnx_file_was_exported_in(int8_file):
    with pytest.raises(EngineError, match='exported in int8.*set precision: int8'):
        DepthEngine(int8_file, backend='onnxruntime')


def test_engine_runs_the_bins_head_at_half_resolution_close_to_the_full_head(student_file):
    images, K = _camera_set()
    full = np.stack(DepthEngine(student_file).predict(images, K).depths)
    engine = DepthEngine(student_file, bins_downsample=2)
    pred = engine.predict(images, K, confidence=True)
    assert engine.backend.model.metric_bins.downsample == 2
    assert pred.depths[0].shape == INPUT and pred.confidences[0].shape == INPUT
    half = np.stack(pred.depths)
    assert not np.array_equal(half, full) and np.median(np.abs(half - full) / full) < 0.05


def test_engine_refuses_bins_downsample_for_a_plain_student_and_an_unknown_factor(tmp_path):
    plain = save_model(tmp_path / 'plain.pt', create_model('tiny_student'), name='tiny_student', kwargs={},
                       input_size=INPUT)
    with pytest.raises(EngineError, match='tiny_student: bins_downsample 2: the model has no MetricBins head'):
        DepthEngine(plain, bins_downsample=2)
    with pytest.raises(EngineError, match=r'bins_downsample must be one of \[1, 2, 4\]'):
        DepthEngine(plain, bins_downsample=3)


def test_engine_asks_for_the_bins_downsample_an_onnx_file_was_exported_with(student_file, tmp_path):
    from surround_depth_train.export.onnx_export import export_onnx

    half = export_onnx(student_file, tmp_path / 'half.onnx', bins_downsample=2, log=lambda _: None).onnx_path
    with pytest.raises(EngineError, match='exported with bins_downsample 2.*set bins_downsample: 2, or export '
                                          'again .* --bins-downsample 1'):
        DepthEngine(half, backend='onnxruntime')
    engine = DepthEngine(half, backend='onnxruntime', bins_downsample=2)
    images, K = _camera_set()
    torch_half = np.stack(DepthEngine(student_file, bins_downsample=2).predict(images, K).depths)
    np.testing.assert_allclose(np.stack(engine.predict(images, K).depths), torch_half, rtol=1e-3)
