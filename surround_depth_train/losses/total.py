"""The weighted total loss (paper Eq. 8) and the Table III baselines as extra weighted terms.

    L_total = w_sup * L_sup + lambda_ckd * L_ckd + lambda_vrkd * L_vrkd
              + w_kd * L_kd + w_fitnets * L_fitnets + w_at * L_at + w_sp * L_sp

The paper uses ``w_sup = 1``, ``lambda_ckd = 0.1``, ``lambda_vrkd = 1`` and no baseline term (the defaults). A
term with weight 0 is inactive: it need not be computed and is left out of the result.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from torch import Tensor

__all__ = ['DistillationWeights', 'combine_losses', 'DISTILLATION_TERMS', 'FEATURE_TERMS']

#: The terms that read the teacher (everything but ``sup``), in the order of :class:`DistillationWeights`.
DISTILLATION_TERMS = ('ckd', 'vrkd', 'kd', 'fitnets', 'at', 'sp')
#: The terms computed on paired decoder features (Table III's feature-level baselines).
FEATURE_TERMS = ('fitnets', 'at', 'sp')


@dataclasses.dataclass(frozen=True)
class DistillationWeights:
    """Weight of each loss term; 0 switches a term off."""

    sup: float = 1.0
    ckd: float = 0.1
    vrkd: float = 1.0
    kd: float = 0.0
    fitnets: float = 0.0
    at: float = 0.0
    sp: float = 0.0

    def __post_init__(self) -> None:
        for name, value in self.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f'loss weight {name}={value} must be finite and >= 0 (0 disables the term)')

    def items(self) -> list[tuple[str, float]]:
        """``(term name, weight)`` for every term, in declaration order."""
        return [(f.name, float(getattr(self, f.name))) for f in dataclasses.fields(self)]

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the terms with a non-zero weight."""
        return tuple(name for name, value in self.items() if value != 0)

    @property
    def distillation(self) -> tuple[str, ...]:
        """Names of the active terms that need the teacher."""
        return tuple(name for name in self.active if name in DISTILLATION_TERMS)

    @property
    def features(self) -> tuple[str, ...]:
        """Names of the active feature-level terms (they need paired decoder features)."""
        return tuple(name for name in self.active if name in FEATURE_TERMS)


def combine_losses(terms: Mapping[str, Tensor], weights: DistillationWeights) -> dict[str, Tensor]:
    """Weighted sum of the active terms.

    Args:
        terms: scalar loss per term name (``'sup'``, ``'ckd'``, ...); inactive terms may be missing.
        weights: the weight of each term.

    Returns:
        ``{'loss': total, <term>: unweighted term, ...}`` for the active terms only, in fp32.
    """
    known = {name for name, _ in weights.items()}
    unknown = sorted(set(terms) - known)
    if unknown:
        raise ValueError(f'unknown loss terms {unknown}; known terms are {sorted(known)}')
    active = weights.active
    if not active:
        raise ValueError('all loss weights are 0; nothing to optimise')
    missing = [name for name in active if name not in terms]
    if missing:
        raise ValueError(f'terms {missing} have non-zero weight but were not given; compute them or set their '
                         f'weight to 0')
    out: dict[str, Tensor] = {}
    total = None
    for name in active:
        term = terms[name].float()
        if term.ndim != 0:
            raise ValueError(f'term {name!r} must be a scalar, got shape {tuple(term.shape)}')
        out[name] = term
        weighted = getattr(weights, name) * term
        total = weighted if total is None else total + weighted
    return {'loss': total, **out}
