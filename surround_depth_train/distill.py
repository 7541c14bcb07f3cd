"""The distillation task: a frozen teacher and a trainable student -> a dict of the total and each loss term.

For a batch of ``B`` camera sets of ``N`` cameras (images ``[B, N, 3, H, W]``), with the student's
``C^s, P^s, D^s`` and the teacher's ``C^t, P^t, D^t`` at the student's resolution (all ``[B*N, ...]``):

    L_sup   = L_depth(D^s, D_gt)                           on valid LiDAR pixels (range and self-occlusion)
    L_ckd   = L_depth(sum_k c^t_k p^s_k, D^t)              teacher detached, student centers untouched, on the
                                                           pixels where the student sees the scene (``self_mask``)
    L_vrkd  = sum_{(i,i+1 mod N)} Huber(Gamma^t_ij, Gamma^s_ij)
    L_total = L_sup + lambda_ckd L_ckd + lambda_vrkd L_vrkd (+ the Table III baselines when weighted)

``L_sup``, ``L_ckd`` and output KD are computed per camera set and averaged over the ``B`` sets, so the loss of a
global batch does not depend on how it is split across processes (DDP equals one process on the same batches).
Only :class:`StudentSide` (the student and any trainable adapters) is wrapped in DDP; the teacher is frozen, in
eval mode, and never receives gradients.

**Feature pairs** (FitNets, AT, SP; paper Sec. IV-B distils between the CNN decoders). Every model's decoder
features are described by :func:`describe_features`: a name, channels and the *stride* = the network's input rows
per feature row, measured by a probe at the training size. Students' features are named by that stride (``d16``,
``d8``, ``d4``, ``d2``, ``d1`` for the Monodepth2 / HR-Depth / MonoViT decoders); the Depth Anything teacher's are
the DPT's ``refinenet4`` .. ``refinenet1`` (strides 14, 7, 3.5, 1.75 on its 14-pixel patch grid). By default each
teacher stage is paired with the student feature of the nearest stride (on a log scale), so ``d16-refinenet4``,
``d8-refinenet3``, ``d4-refinenet2``, ``d2-refinenet1`` for every student family; ``loss.feature_pairs`` names
other pairs as ``STUDENT:TEACHER`` by name or index (:func:`pair_features`). The losses resize the teacher map (or
its attention map) to the student's spatial size; FitNets' 1x1 regressors are sized from the probe.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from surround_depth_train.losses import (DistillationWeights, FitNetsLoss, at_loss, ckd_loss,
                                         combine_losses, depth_loss_by_name, output_kd_loss, sp_loss, vrkd_loss)
from surround_depth_train.models.output import DepthOutput

__all__ = ['StudentSide', 'DistillationTask', 'probe', 'flatten_cameras', 'FeatureInfo', 'describe_features',
           'pair_features', 'format_features', 'CKD_MASKS', 'DPT_FEATURE_NAMES']

#: Names of the Depth Anything DPT decoder's features, in the order the teacher returns them (coarse -> fine).
DPT_FEATURE_NAMES = ('refinenet4', 'refinenet3', 'refinenet2', 'refinenet1')
#: Where ``L_ckd`` is computed: where the student sees the scene (``self_mask``), or on every pixel.
CKD_MASKS = ('self_mask', 'none')


def flatten_cameras(x: Tensor) -> Tensor:
    """``[B, N, ...] -> [B*N, ...]``."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


@torch.no_grad()
def probe(model: nn.Module, size: tuple[int, int]) -> DepthOutput:
    """One eval-mode forward on a zero image of ``size = (width, height)``: reveals bins and feature channels."""
    was_training = model.training
    model.eval()
    out = model(torch.zeros(1, 3, size[1], size[0], device=next(model.parameters()).device))
    model.train(was_training)
    return out


@dataclass(frozen=True)
class FeatureInfo:
    """One decoder feature of a model: its name, channels and stride (network input rows per feature row)."""

    name: str
    channels: int
    stride: float

    def __str__(self) -> str:
        return f'{self.name} ({self.channels} ch, stride {self.stride:g})'


def _network_height(model: nn.Module, size: tuple[int, int]) -> int:
    """Rows of the image the network itself runs at: the teacher resizes to multiples of its patch size."""
    prepare = getattr(model, 'prepare', None)
    if callable(prepare):
        device = next(model.parameters()).device
        with torch.no_grad():
            return int(prepare(torch.zeros(1, 3, size[1], size[0], device=device)).shape[-2])
    return int(size[1])


def describe_features(model: nn.Module, out: DepthOutput, size: tuple[int, int]) -> list[FeatureInfo]:
    """Name, channels and stride of each of ``out.features`` (a :func:`probe` of ``model`` at ``size = (w, h)``).

    The Depth Anything teacher's features are ``refinenet4..1``; any other model's are named ``d<stride>``.
    """
    from surround_depth_train.models.teacher.dpt import DPTHead

    net_h = _network_height(model, size)
    strides = [round(net_h / f.shape[-2], 3) for f in out.features]
    if isinstance(getattr(model, 'depth_head', None), DPTHead) and len(out.features) == len(DPT_FEATURE_NAMES):
        names = list(DPT_FEATURE_NAMES)
    else:
        names = [f'd{s:g}' for s in strides]
    return [FeatureInfo(n, int(f.shape[1]), s) for n, f, s in zip(names, out.features, strides)]


def format_features(features: Sequence[FeatureInfo]) -> str:
    """``0 d16 (256 ch, stride 16), 1 d8 (...)``: how error messages list a model's features."""
    return ', '.join(f'{i} {f}' for i, f in enumerate(features)) or 'none'


def _default_pairs(student: Sequence[FeatureInfo], teacher: Sequence[FeatureInfo]) -> list[tuple[int, int]]:
    pairs, used = [], set()
    for j, t in enumerate(teacher):
        i = min(range(len(student)), key=lambda k: (abs(math.log2(student[k].stride / t.stride)), -student[k].stride))
        if i not in used:  # two teacher stages nearest to one student feature: the first (coarser) one keeps it
            used.add(i)
            pairs.append((i, j))
    return pairs


def _lookup(features: Sequence[FeatureInfo], key: str, side: str) -> int:
    key = key.strip()
    if key.lstrip('-').isdigit():
        index = int(key)
        if 0 <= index < len(features):
            return index
        raise ValueError(f'the {side} has no feature index {index}')
    for i, f in enumerate(features):
        if f.name == key:
            return i
    raise ValueError(f'the {side} has no feature {key!r}')


def pair_features(student: Sequence[FeatureInfo], teacher: Sequence[FeatureInfo],
                  requested: Sequence[str] = ()) -> list[tuple[int, int]]:
    """``(student index, teacher index)`` pairs for the feature-level terms.

    Args:
        student, teacher: from :func:`describe_features`.
        requested: ``'STUDENT:TEACHER'`` entries by name or index (``'d16:refinenet4'``, ``'0:0'``); empty =
            the default pairing by nearest stride (see the module docstring).

    Raises:
        ValueError: an entry that is malformed or names a feature that does not exist; the message lists both
            sides' features.
    """
    def fail(problem: str) -> ValueError:
        return ValueError(f'{problem}; student features: {format_features(student)}; teacher features: '
                          f'{format_features(teacher)}. Write loss.feature_pairs as STUDENT:TEACHER names or '
                          f'indices, e.g. loss.feature_pairs=[d16:refinenet4,d8:refinenet3], or leave it empty '
                          f'for the pairing by stride')

    if not student or not teacher:
        raise fail('feature-level distillation needs decoder features on both sides')
    if not requested:
        return _default_pairs(student, teacher)
    pairs = []
    for entry in requested:
        parts = str(entry).split(':')
        if len(parts) != 2:
            raise fail(f'{entry!r} is not of the form STUDENT:TEACHER')
        try:
            pair = (_lookup(student, parts[0], 'student'), _lookup(teacher, parts[1], 'teacher'))
        except ValueError as exc:
            raise fail(f'{entry!r}: {exc}') from None
        if pair in pairs:
            raise fail(f'{entry!r} is listed twice')
        pairs.append(pair)
    return pairs


class StudentSide(nn.Module):
    """The trainable part: the student and, for FitNets, its feature regressors. This is what DDP wraps.

    ``forward`` returns the student's output and the FitNets regressions of the paired student features (empty
    without FitNets): every trainable parameter is used inside the forward pass, as DDP requires.
    """

    def __init__(self, student: nn.Module, fitnets: FitNetsLoss | None = None, fitnets_features: Sequence[int] = ()):
        super().__init__()
        self.student = student
        self.fitnets = fitnets
        self.fitnets_features = [int(i) for i in fitnets_features]

    def forward(self, images: Tensor) -> tuple[DepthOutput, list[Tensor]]:
        out = self.student(images)
        if self.fitnets is None:
            return out, []
        return out, self.fitnets.regress([out.features[i] for i in self.fitnets_features])


class DistillationTask(nn.Module):
    """Computes every active loss term for one batch.

    Args:
        student: the trainable depth model (a student, or the teacher itself when fine-tuning it).
        weights: loss weights; a term with weight 0 is not computed.
        min_depth, max_depth: GT range used for supervision masks of dense targets.
        teacher: the frozen teacher, required when any distillation weight is non-zero.
        depth_loss: ``'silog'`` or ``'l1'`` for ``L_sup``, ``L_ckd`` and output KD.
        vrkd_reduction: ``'map'`` or ``'pixel'`` (see :func:`surround_depth_train.losses.vrkd_loss`).
        target: ``'depth'`` (sparse LiDAR) or ``'depth_dense'`` (dense GT, where the dataset has it).
        feature_pairs: ``(student index, teacher index)`` into the models' ``features``, for FitNets, AT and SP
            (see :func:`pair_features`).
        fitnets_channels: ``(student_channels, teacher_channels)`` of the paired features, one entry per pair.
        ckd_mask: ``'self_mask'`` (default) computes ``L_ckd`` where the student sees the scene (the sample's
            ``self_mask``); ``'none'`` on every pixel with teacher depth.
    """

    def __init__(self, student: nn.Module, *, weights: DistillationWeights, min_depth: float, max_depth: float,
                 teacher: nn.Module | None = None, depth_loss: str = 'silog', vrkd_reduction: str = 'map',
                 target: str = 'depth', feature_pairs: Sequence[tuple[int, int]] = (),
                 fitnets_channels: tuple[Sequence[int], Sequence[int]] | None = None, ckd_mask: str = 'self_mask'):
        super().__init__()
        kd_terms = list(weights.distillation)
        if kd_terms and teacher is None:
            raise ValueError(f'loss terms {kd_terms} need a teacher; configure teacher.* or set their weights to 0')
        if (weights.ckd > 0 or weights.vrkd > 0) and not getattr(student, 'has_bins', False):
            raise ValueError('CKD and VRKD need a student with the MetricBins head (a *_mb model); '
                             'pick e.g. model.name=monodepth2_mb or set loss.ckd=0 loss.vrkd=0')
        if ckd_mask not in CKD_MASKS:
            raise ValueError(f'ckd_mask must be one of {CKD_MASKS}, got {ckd_mask!r}')
        self.feature_pairs = [(int(i), int(j)) for i, j in feature_pairs]
        if weights.features and not self.feature_pairs:
            raise ValueError(f'loss terms {list(weights.features)} need feature_pairs (student, teacher) to compare')
        fitnets = None
        if weights.fitnets > 0:
            if fitnets_channels is None or len(fitnets_channels[0]) != len(self.feature_pairs):
                raise ValueError('FitNets needs the channels of each paired student and teacher feature '
                                 '(fitnets_channels, one entry per feature pair)')
            fitnets = FitNetsLoss(*fitnets_channels)
        self.student_side = StudentSide(student, fitnets, [i for i, _ in self.feature_pairs] if fitnets else ())
        self.runner: nn.Module = self.student_side  # replaced by the DDP wrapper in distributed runs
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.weights = weights
        self.depth_loss = depth_loss_by_name(depth_loss)
        self.vrkd_reduction = vrkd_reduction
        self.target = target
        self.ckd_mask = ckd_mask
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)

    def train(self, mode: bool = True) -> 'DistillationTask':
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher never leaves eval mode (frozen BN, no dropout)
        return self

    @property
    def student(self) -> nn.Module:
        return self.student_side.student

    @property
    def teacher_fields(self) -> tuple[str, ...]:
        """The teacher outputs the active terms read (what a teacher cache must hold)."""
        w, fields = self.weights, []
        if w.ckd > 0 or w.vrkd > 0:
            fields += ['centers', 'probs']
        if w.ckd > 0 or w.kd > 0:
            fields.append('depth')
        if w.features:
            fields.append('features')
        return tuple(fields)

    @torch.no_grad()
    def teacher_outputs(self, images: Tensor) -> DepthOutput:
        """Teacher outputs for flattened images ``[B*N, 3, H, W]`` at the same resolution; ``features`` holds
        the paired teacher features only, in pair order."""
        out = self.teacher(images)
        out.features = [out.features[j] for _, j in self.feature_pairs]
        return out

    def supervision(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Target depth and its valid mask, ``[B, N, 1, H, W]``."""
        if self.target == 'depth':
            return batch['depth'], batch['depth_mask']
        if 'depth_dense' not in batch:
            raise ValueError('loss.teacher_target=dense needs a dataset with dense GT (SurroundSim); '
                             'use loss.teacher_target=lidar for nuScenes/DDAD')
        dense = batch['depth_dense']
        mask = (dense > self.min_depth) & (dense < self.max_depth)
        if 'self_mask' in batch:
            mask &= batch['self_mask']
        return dense, mask

    def forward(self, batch: dict[str, Tensor], teacher_out: DepthOutput | None = None) -> dict[str, Tensor]:
        """Loss terms for ``batch``; ``teacher_out`` (e.g. from a cache) as :meth:`teacher_outputs` returns it."""
        images = batch['image']
        if images.ndim != 5:
            raise ValueError(f'expected images [B, N, 3, H, W] (a batch of camera sets), got {tuple(images.shape)}')
        B, N = images.shape[:2]
        flat = flatten_cameras(images)
        out, regressed = self.runner(flat)
        w = self.weights
        if w.distillation and teacher_out is None:
            teacher_out = self.teacher_outputs(flat)
        terms: dict[str, Tensor] = {}

        def per_set(fn, *tensors):
            # mean over camera sets of a loss computed on each set's N images
            return torch.stack([fn(*(t[b * N:(b + 1) * N] if t is not None else None for t in tensors))
                                for b in range(B)]).mean()

        if w.sup > 0:
            target, mask = self.supervision(batch)
            terms['sup'] = per_set(lambda p, g, m: self.depth_loss(p, g, m), out.depth, flatten_cameras(target),
                                   flatten_cameras(mask))
        if w.ckd > 0:
            scene = None
            if self.ckd_mask == 'self_mask':
                if 'self_mask' not in batch:
                    raise ValueError('loss.ckd_mask=self_mask needs the samples\' self_mask; use loss.ckd_mask=none')
                scene = flatten_cameras(batch['self_mask'])
            terms['ckd'] = per_set(lambda p, c, d, m: ckd_loss(p, c, d, m, depth_loss=self.depth_loss),
                                   out.probs, teacher_out.centers, teacher_out.depth, scene)
        if w.vrkd > 0:
            terms['vrkd'] = vrkd_loss(out.probs.reshape(B, N, *out.probs.shape[1:]),
                                      teacher_out.probs.reshape(B, N, *teacher_out.probs.shape[1:]),
                                      reduction=self.vrkd_reduction)
        if w.kd > 0:
            terms['kd'] = per_set(lambda s, t: output_kd_loss(s, t, depth_loss=self.depth_loss),
                                  out.depth, teacher_out.depth)
        if w.features:
            if len(teacher_out.features) != len(self.feature_pairs):
                raise ValueError(f'got {len(teacher_out.features)} teacher features for {len(self.feature_pairs)} '
                                 f'feature pairs; pass teacher outputs as teacher_outputs() returns them')
            student_feats = [out.features[i] for i, _ in self.feature_pairs]
            teacher_feats = teacher_out.features
            if w.fitnets > 0:
                terms['fitnets'] = self.student_side.fitnets.hint_loss(regressed, teacher_feats)
            if w.at > 0:
                terms['at'] = at_loss(student_feats, teacher_feats)
            if w.sp > 0:
                terms['sp'] = sp_loss(student_feats, teacher_feats)
        return combine_losses(terms, w)
