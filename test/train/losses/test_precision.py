"""Every loss computes in fp32 under bf16 autocast: checked so that a no-op ``fp32_region`` fails.

On CPU, autocast lowers matmuls and convolutions (FitNets' regressors, SP's similarity matrix) to bf16 even on fp32
inputs; elementwise arithmetic it leaves alone. So two checks: the loss equals its fp32 value to 1e-6 (a bf16
matmul or convolution is off by ~1e-3), and the loss's arithmetic ran with autocast switched off (recorded for
every torch call), which a region that does nothing never shows.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch.overrides import TorchFunctionMode

from surround_depth_train.losses import (FitNetsLoss, at_loss, ckd_loss, cross_depth, l1_loss, output_kd_loss,
                                         silog_loss, sp_loss, vrkd_loss)
from surround_depth_train.losses.precision import fp32_region


class AutocastRecorder(TorchFunctionMode):
    """Records, for every torch function called, whether CPU autocast was on."""

    def __init__(self):
        super().__init__()
        self.autocast_on: list[bool] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.autocast_on.append(torch.is_autocast_enabled('cpu'))
        return func(*args, **(kwargs or {}))


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(2, 8, 6, 6, generator=g).softmax(dim=1)
    return {
        'depth': (torch.rand(2, 1, 6, 6, generator=g) * 30 + 1, torch.rand(2, 1, 6, 6, generator=g) * 30 + 1),
        'probs': probs,
        'centers': torch.rand(2, 8, 6, 6, generator=g) * 10 + 1,
        'views': (torch.rand(2, 3, 8, 4, 4, generator=g).softmax(dim=2),
                  (torch.rand(2, 3, 8, 4, 4, generator=g) * 3).softmax(dim=2)),
        # wide channels and many pixels so a bf16 reduction would show
        'feats': ([torch.randn(4, 96, 8, 8, generator=g)], [torch.randn(4, 128, 16, 16, generator=g)]),
    }


torch.manual_seed(0)
FITNETS = FitNetsLoss([96], [128])
LOSSES = {
    'silog': lambda x: silog_loss(*x['depth']),
    'l1': lambda x: l1_loss(*x['depth']),
    'cross_depth': lambda x: cross_depth(x['probs'], x['centers']),
    'ckd': lambda x: ckd_loss(x['probs'], x['centers'], x['depth'][1]),
    'vrkd_map': lambda x: vrkd_loss(*x['views'], 'map'),
    'vrkd_pixel': lambda x: vrkd_loss(*x['views'], 'pixel'),
    'output_kd': lambda x: output_kd_loss(*x['depth']),
    'fitnets': lambda x: FITNETS(*x['feats']),
    'at': lambda x: at_loss(*x['feats']),
    'sp': lambda x: sp_loss(*x['feats']),
}


def test_fp32_region_turns_autocast_off_inside_only():
    a, b = torch.rand(8, 8), torch.rand(8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        with fp32_region(a):
            assert (a @ b).dtype == torch.float32
            assert not torch.is_autocast_enabled('cpu')
        assert (a @ b).dtype == torch.bfloat16


def check_fp32_under_autocast(name: str) -> None:
    fn = LOSSES[name]
    x = _inputs()
    reference = fn(x)
    recorder = AutocastRecorder()
    with torch.autocast('cpu', dtype=torch.bfloat16), recorder:
        out = fn(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=1e-6, atol=0)
    assert recorder.autocast_on and recorder.autocast_on[0], 'the recorder must see the caller\'s autocast'
    assert not recorder.autocast_on[-1], f'{name}: its last operation ran under autocast'


@pytest.mark.parametrize('name', list(LOSSES))
def test_loss_computes_in_fp32_under_bf16_autocast(name):
    check_fp32_under_autocast(name)


@pytest.mark.parametrize('name', list(LOSSES))
def test_the_check_fails_when_fp32_region_does_nothing(name, monkeypatch):
    @contextlib.contextmanager
    def no_op(like):
        yield

    for module in ('depth', 'ckd', 'vrkd', 'feature_kd'):
        monkeypatch.setattr(f'surround_depth_train.losses.{module}.fp32_region', no_op)
    with pytest.raises(AssertionError):
        check_fp32_under_autocast(name)
