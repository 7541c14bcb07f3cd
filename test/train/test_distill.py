"""The distillation task with the real student families against the real ViT-S teacher: every loss term forward
and backward, the feature pairing, L_ckd on the scene pixels, the teacher frozen."""
from __future__ import annotations

import functools

import pytest
import torch

from surround_depth_train.distill import (DistillationTask, FeatureInfo, describe_features, pair_features,
                                          probe)
from surround_depth_train.losses import DistillationWeights
from surround_depth_train.models import create_model

SIZE = (96, 64)  # (width, height)
# each real student family; the timm student with a four-level ConvNeXt pyramid (strides 4..32) pairs differently
FAMILIES = {
    'monodepth2_mb': {},
    'hrdepth_mb': {},
    'monovit_mb': {},
    'timm_student_mb': {'backbone': 'convnext_atto'},
}
TERMS = ('sup', 'ckd', 'vrkd', 'kd', 'fitnets', 'at', 'sp')


@functools.lru_cache(maxsize=1)
def vits_teacher():
    torch.manual_seed(0)
    return create_model('depth_anything_vits_metric', input_size=[56, 84])


# three cameras: with two, both cyclic pairs are the same pair and every normalised VRKD relation is 1
def make_batch(sets: int = 1, cameras: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    w, h = SIZE
    depth = torch.rand(sets, cameras, 1, h, w, generator=g) * 30 + 1
    self_mask = torch.ones(sets, cameras, 1, h, w, dtype=torch.bool)
    self_mask[..., -8:, :] = False  # the ego body at the bottom of every image
    return {'image': torch.rand(sets, cameras, 3, h, w, generator=g), 'depth': depth,
            'depth_mask': (torch.rand(depth.shape, generator=g) < 0.3) & self_mask, 'self_mask': self_mask}


def build_task(student, teacher, weights: DistillationWeights, **kwargs) -> DistillationTask:
    pairs, channels = [], None
    if weights.features:
        s_out, t_out = probe(student, SIZE), probe(teacher, SIZE)
        pairs = pair_features(describe_features(student, s_out, SIZE), describe_features(teacher, t_out, SIZE))
        channels = ([s_out.features[i].shape[1] for i, _ in pairs], [t_out.features[j].shape[1] for _, j in pairs])
    return DistillationTask(student, weights=weights, min_depth=0.1, max_depth=80.0, teacher=teacher,
                            feature_pairs=pairs, fitnets_channels=channels, **kwargs)


@functools.lru_cache(maxsize=None)
def all_terms_of(family: str):
    """One forward of ``family`` with every term active; the graph is kept so each test backpropagates one term."""
    torch.manual_seed(1)
    student = create_model(family, **FAMILIES[family])
    weights = DistillationWeights(sup=1, ckd=1, vrkd=1, kd=1, fitnets=1, at=1, sp=1)
    task = build_task(student, vits_teacher(), weights).train()
    return task, task(make_batch())


def grads(loss: torch.Tensor, params: list) -> list:
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


@pytest.mark.slow
@pytest.mark.parametrize('family, term', [(f, t) for f in FAMILIES for t in TERMS])
def test_each_loss_term_runs_forward_and_backward_with_every_real_student_family(family, term):
    task, losses = all_terms_of(family)
    assert set(losses) == {'loss', *TERMS}
    value = losses[term]
    assert value.ndim == 0 and torch.isfinite(value), (family, term, value)
    student = [p for p in task.student.parameters() if p.requires_grad]
    g = grads(value, student)
    reached = [x for x in g if x is not None]
    assert reached and all(torch.isfinite(x).all() for x in reached)
    assert sum(float(x.abs().sum()) for x in reached) > 0
    assert all(not p.requires_grad and p.grad is None for p in task.teacher.parameters())
    if term == 'fitnets':
        regressors = list(task.student_side.fitnets.parameters())
        assert all(x is not None and x.abs().sum() > 0 for x in grads(value, regressors))
    if term == 'ckd':
        # the student's centers get nothing from L_ckd: neither the layers that only shape centers ...
        bins = task.student.metric_bins
        only_centers = [*bins.seed_bin_regressor.parameters(), *bins.attractors.parameters()]
        assert all(x is None or x.abs().sum() == 0 for x in grads(value, only_centers))
        # ... while the probabilities' own head does learn from it
        head = list(bins.conditional_log_binomial.parameters())
        assert sum(float(x.abs().sum()) for x in grads(value, head) if x is not None) > 0


@pytest.mark.slow
@pytest.mark.parametrize('family', list(FAMILIES))
def test_default_pairing_matches_each_teacher_stage_with_the_student_feature_of_the_nearest_stride(family):
    task, _ = all_terms_of(family)
    teacher = vits_teacher()
    student_feats = describe_features(task.student, probe(task.student, SIZE), SIZE)
    teacher_feats = describe_features(teacher, probe(teacher, SIZE), SIZE)
    assert [f.name for f in teacher_feats] == ['refinenet4', 'refinenet3', 'refinenet2', 'refinenet1']
    assert [f.stride for f in teacher_feats] == [14, 7, 3.5, 1.75]
    named = [(student_feats[i].name, teacher_feats[j].name) for i, j in task.feature_pairs]
    finest = 'd1' if family == 'timm_student_mb' else 'd2'  # the ConvNeXt pyramid has no stride-2 level
    assert named == [('d16', 'refinenet4'), ('d8', 'refinenet3'), ('d4', 'refinenet2'), (finest, 'refinenet1')]


STUDENT = [FeatureInfo('d16', 256, 16), FeatureInfo('d8', 128, 8), FeatureInfo('d4', 64, 4),
           FeatureInfo('d2', 32, 2), FeatureInfo('d1', 16, 1)]
TEACHER = [FeatureInfo('refinenet4', 64, 14), FeatureInfo('refinenet3', 64, 7), FeatureInfo('refinenet2', 64, 3.5),
           FeatureInfo('refinenet1', 64, 1.75)]


def test_feature_pairs_are_named_by_stage_name_or_index():
    assert pair_features(STUDENT, TEACHER, ['d8:refinenet4', '4:3']) == [(1, 0), (4, 3)]


@pytest.mark.parametrize('entry, problem', [('d32:refinenet4', "no feature 'd32'"),
                                            ('d16:refinenet9', "no feature 'refinenet9'"),
                                            ('7:0', 'no feature index 7'), ('d16', 'not of the form')])
def test_a_feature_pair_that_does_not_exist_is_refused_naming_both_sides_features(entry, problem):
    with pytest.raises(ValueError, match=problem) as info:
        pair_features(STUDENT, TEACHER, [entry])
    message = str(info.value)
    assert '0 d16 (256 ch, stride 16)' in message and '3 refinenet1 (64 ch, stride 1.75)' in message
    assert 'loss.feature_pairs=' in message


def test_a_student_feature_nearest_to_several_teacher_stages_is_paired_once_with_the_coarsest():
    student = [FeatureInfo('d16', 8, 16), FeatureInfo('d1', 8, 1)]
    # refinenet4, 3 -> d16 (kept by refinenet4); refinenet2, 1 -> d1 (kept by refinenet2)
    assert pair_features(student, TEACHER) == [(0, 0), (1, 2)]


def tiny_pair():
    torch.manual_seed(2)
    student = create_model('tiny_student_mb')
    teacher = create_model('depth_anything_tiny_metric', input_size=[42, 56], n_bins=16)
    return student, teacher


def test_ckd_is_computed_where_the_student_sees_the_scene_unless_switched_off():
    student, teacher = tiny_pair()
    batch = make_batch()
    flat = batch['image'].flatten(0, 1)
    with torch.no_grad():
        t_out = teacher(flat)
    ego = ~batch['self_mask'].flatten(0, 1)
    changed = type(t_out)(depth=torch.where(ego, t_out.depth * 5, t_out.depth), centers=t_out.centers,
                          probs=t_out.probs)
    weights = DistillationWeights(sup=0, ckd=1, vrkd=0)
    values = {}
    for mask in ('self_mask', 'none'):
        task = build_task(student, teacher, weights, ckd_mask=mask).eval()
        with torch.no_grad():
            values[mask] = (float(task(batch, t_out)['ckd']), float(task(batch, changed)['ckd']))
    # teacher depth on the ego body changes nothing with the default, and changes L_ckd without the mask
    assert values['self_mask'][0] == pytest.approx(values['self_mask'][1], rel=1e-6)
    assert abs(values['none'][0] - values['none'][1]) > 1e-3


def test_feature_terms_without_pairs_and_unknown_ckd_mask_are_refused():
    student, teacher = tiny_pair()
    with pytest.raises(ValueError, match='feature_pairs'):
        DistillationTask(student, weights=DistillationWeights(at=1), min_depth=0.1, max_depth=80, teacher=teacher)
    with pytest.raises(ValueError, match='ckd_mask'):
        DistillationTask(student, weights=DistillationWeights(), min_depth=0.1, max_depth=80, teacher=teacher,
                         ckd_mask='ego')


def test_teacher_stays_frozen_and_in_eval_mode_when_the_task_trains():
    student, teacher = tiny_pair()
    teacher.train()
    task = build_task(student, teacher, DistillationWeights(sup=1, ckd=1, vrkd=1, at=1)).train()
    assert not teacher.training and task.student.training
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    optimizer = torch.optim.SGD(task.student_side.parameters(), lr=0.1)
    task(make_batch())['loss'].backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
