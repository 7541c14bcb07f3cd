"""The teacher cache stores exactly what the active terms read, and serves it back as the teacher computed it."""
import pytest
import torch

from surround_depth_train.distill import DistillationTask
from surround_depth_train.losses import DistillationWeights
from surround_depth_train.models import create_model
from surround_depth_train.training.teacher_cache import TeacherCache, expected_cache_bytes, teacher_cache_key


@pytest.fixture(scope='module')
def teacher():
    torch.manual_seed(0)
    return create_model('depth_anything_tiny_metric', input_size=[28, 42], n_bins=16).eval()


def task_with(teacher, **weights) -> DistillationTask:
    w = DistillationWeights(**{'ckd': 0.0, 'vrkd': 0.0, **weights})
    return DistillationTask(create_model('tiny_student_mb'), weights=w, min_depth=0.1, max_depth=80,
                            teacher=teacher, feature_pairs=[(0, 0), (3, 3)] if w.features else ())


@pytest.mark.parametrize('weights, fields', [({'ckd': 0.1}, ('centers', 'probs', 'depth')),
                                             ({'vrkd': 1.0}, ('centers', 'probs')),
                                             ({'kd': 1.0}, ('depth',)),
                                             ({'sp': 1.0, 'at': 1.0}, ('features',))])
def test_cache_holds_the_fields_of_the_active_terms_and_serves_them_back(tmp_path, teacher, weights, fields):
    task = task_with(teacher, **weights)
    assert task.teacher_fields == fields
    cache = TeacherCache(tmp_path, 'key', fields)
    images = torch.rand(2 * 6, 3, 64, 96)
    first = cache.get([3, 5], images, task.teacher_outputs, cameras=6)
    second = cache.get([3, 5], images, task.teacher_outputs, cameras=6)
    assert (cache.misses, cache.hits) == (2, 2)
    live = task.teacher_outputs(images)
    for out in (first, second):
        for name in fields:
            if name == 'features':
                assert len(out.features) == 2
                for a, b in zip(out.features, live.features):
                    torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)
            else:
                torch.testing.assert_close(getattr(out, name), getattr(live, name), rtol=2e-3, atol=2e-3)
        for name in {'centers', 'probs'} - set(fields):
            assert getattr(out, name) is None
    entry = torch.load(cache.dir / '00000003.pt', weights_only=True)
    assert sorted(entry) == sorted(fields)
    stored = sum(sum(t.numel() for t in v) if k == 'features' else v.numel() for k, v in entry.items())
    assert expected_cache_bytes(live, 1, 1, fields) * 6 == stored * 2


def test_cache_key_changes_with_the_fields_and_the_paired_teacher_features():
    base = dict(teacher_name='t', teacher_kwargs={}, checkpoint=None, dataset_id='d', image_size=(96, 64))
    keys = {teacher_cache_key(**base), teacher_cache_key(**base, fields=('features',), feature_pairs=[(0, 0)]),
            teacher_cache_key(**base, fields=('features',), feature_pairs=[(0, 1)])}
    assert len(keys) == 3
