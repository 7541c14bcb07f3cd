"""DepthEngine: one batched forward for all cameras, depth back at each camera's resolution, the focal check."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from surround_depth_ros.engine import DepthEngine, EngineError, focal_ratio
from surround_depth_train.models import create_model, save_model

INPUT = (64, 96)  # network input (height, width)


def _K(width, height, f=None):
    f = f or 0.8 * width
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


@pytest.fixture(scope='module')
def student_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('engine') / 'tiny.pt'
    save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=INPUT)
    return path


def _images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_engine_returns_depth_at_each_cameras_own_resolution(student_file):
    engine = DepthEngine(student_file)
    sizes = [(96, 128), (64, 96), (120, 200)]
    pred = engine.predict(_images(sizes), [_K(w, h) for h, w in sizes])
    assert [d.shape for d in pred.depths] == sizes
    assert all(d.dtype == np.float32 and np.isfinite(d).all() for d in pred.depths)
    lo, hi = engine.depth_range
    assert all((d >= lo * 0.99).all() and (d <= hi * 1.01).all() for d in pred.depths)


def test_engine_depth_equals_the_model_on_the_resized_batch(student_file):
    engine = DepthEngine(student_file)
    images = _images([INPUT] * 6)
    pred = engine.predict(images, [_K(INPUT[1], INPUT[0])] * 6)
    model = engine.backend.model
    batch = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in images])
    with torch.no_grad():
        expected = model(batch, depth_only=True).depth[:, 0].numpy()
    np.testing.assert_allclose(np.stack(pred.depths), expected, rtol=1e-5, atol=1e-5)


def test_engine_scales_K_to_the_network_input(student_file):
    engine = DepthEngine(student_file)
    pred = engine.predict(_images([(128, 192)]), [_K(192, 128, f=150.0)])
    np.testing.assert_allclose(pred.intrinsics_net[0][0, 0], 150.0 * INPUT[1] / 192)
    np.testing.assert_allclose(pred.intrinsics_net[0][0, 2], (95.5 + 0.5) * INPUT[1] / 192 - 0.5)


def test_engine_reuses_its_host_buffers_between_calls(student_file):
    engine = DepthEngine(student_file)
    first = engine.predict(_images([INPUT] * 2), [_K(96, 64)] * 2).depths[0]
    second = engine.predict(_images([INPUT] * 2, seed=1), [_K(96, 64)] * 2).depths[0]
    assert np.shares_memory(first, second)


def test_engine_without_a_training_rig_says_once_that_the_focal_check_is_unavailable(student_file):
    messages = []
    engine = DepthEngine(student_file, logger=messages.append)
    for _ in range(3):
        engine.predict(_images([INPUT]), [_K(96, 64)])
    unavailable = [m for m in messages if 'training rig' in m]
    assert len(unavailable) == 1 and 'unavailable' in unavailable[0]


def test_focal_ratio_is_the_geometric_mean_focal_length_ratio():
    assert focal_ratio(_K(96, 64, f=120.0), _K(96, 64, f=100.0)) == pytest.approx(1.2)


def test_engine_refuses_a_missing_model_file_with_the_fix(tmp_path):
    with pytest.raises(EngineError, match='does not exist.*surround_depth_train.train'):
        DepthEngine(tmp_path / 'nope.pt')


def test_engine_refuses_half_precision_on_the_cpu(student_file):
    with pytest.raises(EngineError, match='GPU only.*fp32'):
        DepthEngine(student_file, precision='fp16')


def test_engine_refuses_a_teacher_unless_allowed(tmp_path):
    path = tmp_path / 'teacher.pt'
    save_model(path, create_model('depth_anything_tiny_metric'), name='depth_anything_tiny_metric', kwargs={},
               input_size=(56, 84))
    with pytest.raises(EngineError, match='teacher.*allow_teacher'):
        DepthEngine(path)
    engine = DepthEngine(path, allow_teacher=True)
    pred = engine.predict(_images([(60, 90)]), [_K(90, 60)])
    assert pred.depths[0].shape == (60, 90)
    with pytest.raises(EngineError, match='recorded input size'):
        DepthEngine(path, allow_teacher=True, input_size=(112, 168))


def test_engine_accepts_an_input_size_override_for_a_student_and_warns_once_with_both_sizes(student_file):
    messages = []
    engine = DepthEngine(student_file, input_size=(96, 128), logger=messages.append)
    assert engine.input_size == (96, 128)
    for _ in range(2):
        pred = engine.predict(_images([(96, 128)]), [_K(128, 96)])
    assert pred.depths[0].shape == (96, 128)
    sizes = [m for m in messages if 'trained at' in m]
    assert len(sizes) == 1 and 'trained at 96 x 64 (w x h) and runs at 128 x 96' in sizes[0]
    silent = []
    DepthEngine(student_file, input_size=INPUT, logger=silent.append).predict(_images([INPUT]), [_K(96, 64)])
    assert not [m for m in silent if 'trained at' in m]  # its own size: no word


def test_engine_refuses_an_input_size_the_network_cannot_take(student_file):
    with pytest.raises(EngineError, match=r'input_size \[16, 200\]: .*cannot run at 200 x 16.*at least 33 pixels'):
        DepthEngine(student_file, input_size=(16, 200))


def test_engine_names_a_bad_image_and_a_bad_K(student_file):
    engine = DepthEngine(student_file)
    with pytest.raises(EngineError, match=r'front: expected an \[H, W, 3\] uint8'):
        engine.predict([np.zeros((64, 96), np.float32)], [_K(96, 64)], names=['front'])
    with pytest.raises(EngineError, match='front'):
        engine.predict(_images([INPUT]), [np.zeros((3, 3))], names=['front'])


def test_engine_resizes_with_antialiasing_when_shrinking(student_file):
    engine = DepthEngine(student_file)
    image = _images([(128, 192)])[0]
    batch = engine.prepare([image])
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    expected = F.interpolate(x, size=INPUT, mode='bilinear', align_corners=False, antialias=True)
    torch.testing.assert_close(batch, expected)


def test_engine_warns_once_about_a_focal_length_change_and_corrects_depth_when_asked(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / 'rig.pt'
    rig = [{'name': 'front', 'K': _K(96, 64, f=80.0).tolist(), 'width': 96, 'height': 64}]
    save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=INPUT,
               training_rig=rig)
    images = _images([INPUT])
    plain, corrected = [], []
    engine = DepthEngine(path, logger=plain.append)
    fixed = DepthEngine(path, logger=corrected.append, focal_correction=True)
    for _ in range(2):
        same = engine.predict(images, [_K(96, 64, f=80.0)], names=['front'])
        assert same.focal_ratios == [pytest.approx(1.0)] and not plain
    base = engine.predict(images, [_K(96, 64, f=100.0)], names=['front']).depths[0].copy()
    engine.predict(images, [_K(96, 64, f=100.0)], names=['front'])
    assert len(plain) == 1 and 'factor 1.250' in plain[0] and 'focal_correction' in plain[0]
    pred = fixed.predict(images, [_K(96, 64, f=100.0)], names=['front'])
    assert pred.focal_ratios == [pytest.approx(1.25)] and 'correcting' in corrected[0]
    np.testing.assert_allclose(pred.depths[0], 1.25 * base, rtol=1e-5)


def test_cameras_are_matched_to_the_training_rig_by_name_never_by_position(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / 'rig.pt'
    rig = [{'name': 'front', 'K': _K(96, 64, f=80.0).tolist(), 'width': 96, 'height': 64},
           {'name': 'back', 'K': _K(96, 64, f=40.0).tolist(), 'width': 96, 'height': 64}]
    save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=INPUT,
               training_rig=rig)
    images, Ks = _images([INPUT] * 2), [_K(96, 64, f=40.0), _K(96, 64, f=80.0)]  # back first, front second
    assert DepthEngine(path).predict(images, Ks, names=['back', 'front']).focal_ratios == [pytest.approx(1.0)] * 2
    messages = []
    engine = DepthEngine(path, logger=messages.append, focal_correction=True)
    plain = DepthEngine(path, logger=lambda message: None)
    for _ in range(2):  # same count as the training rig, other names: neither checked nor corrected
        pred = engine.predict(images, Ks, names=['CAM_BACK', 'CAM_FRONT'])
        assert pred.focal_ratios == [None, None]
    np.testing.assert_array_equal(pred.depths[0], plain.predict(images, Ks, names=['CAM_BACK', 'CAM_FRONT']).depths[0])
    assert len(messages) == 1 and "['CAM_BACK', 'CAM_FRONT']" in messages[0]
    assert "training_cameras: {CAM_BACK: <one of ['front', 'back']>, CAM_FRONT: ...}" in messages[0]  # the fix
    mapped = DepthEngine(path, training_cameras={'CAM_BACK': 'back', 'CAM_FRONT': 'front'})
    assert mapped.predict(images, Ks, names=['CAM_BACK', 'CAM_FRONT']).focal_ratios == [pytest.approx(1.0)] * 2
    with pytest.raises(EngineError, match=r"training_cameras \{'CAM_BACK': 'rear'\}.*\['front', 'back'\]"):
        DepthEngine(path, training_cameras={'CAM_BACK': 'rear'})
