"""The gate that SurroundSim carries monocular depth cues: a small Monodepth2-style network trained briefly on
the train split's LiDAR depth beats the constant-depth and flat-ground predictors on held-out (test split) streets.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from surround_depth_train.data import collate_surround
from surround_depth_train.data.surroundsim import MAX_DEPTH, MIN_DEPTH, SurroundSimDataset
from surround_depth_train.metrics import compute_depth_metrics

SIZE = (112, 64)
STEPS = 300


def _block(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ELU())


class TinyMonodepth(nn.Module):
    """Strided-conv encoder, nearest-upsampling decoder with skips, sigmoid disparity -> depth (Monodepth2's
    ``1 / (1/max + (1/min - 1/max) sigma)``). Pixel coordinates are fed as two extra channels, as a network with
    a large receptive field would infer position."""

    def __init__(self, widths=(16, 32, 64, 96)):
        super().__init__()
        c = (5,) + tuple(widths)
        self.enc = nn.ModuleList([_block(c[i], c[i + 1], 2) for i in range(4)])
        self.dec = nn.ModuleList([_block(c[4 - i] + c[3 - i], max(c[3 - i], 16), 1) for i in range(4)])
        self.out = nn.Conv2d(16, 1, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        v = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(b, 1, h, w)
        u = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(b, 1, h, w)
        feats = [torch.cat([image, u, v], 1)]
        for layer in self.enc:
            feats.append(layer(feats[-1]))
        y = feats[-1]
        for i, layer in enumerate(self.dec):
            y = layer(torch.cat([F.interpolate(y, scale_factor=2, mode='nearest'), feats[-2 - i]], 1))
        disp = torch.sigmoid(self.out(y))
        return 1.0 / (1.0 / MAX_DEPTH + (1.0 / MIN_DEPTH - 1.0 / MAX_DEPTH) * disp)


def _flat_ground(K: torch.Tensor, T: torch.Tensor, h: int, w: int, sky: float) -> torch.Tensor:
    """Depth of the ground plane z = 0 through each pixel's ray, capped at the max depth; ``sky`` elsewhere."""
    K, T = K.double(), T.double()
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing='ij')
    xn = (u - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None]
    yn = (v - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None]
    dz = T[:, 2, 0, None, None] * xn + T[:, 2, 1, None, None] * yn + T[:, 2, 2, None, None]  # base z of the ray
    depth = -T[:, 2, 3, None, None] / dz.clamp(max=-1e-9)
    return torch.where(dz < 0, depth.clamp(max=MAX_DEPTH), torch.full_like(depth, sky)).unsqueeze(1).float()


def _abs_rel(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> float:
    results = [compute_depth_metrics(pred[i, 0], gt[i, 0], MIN_DEPTH, MAX_DEPTH, mask[i, 0]) for i in range(len(gt))]
    return float(np.mean([r['abs_rel'] for r in results if r is not None]))


@pytest.fixture
def one_thread():
    """One intra-op thread: many small ops run faster serially, and far faster when other processes compete for
    the two cores (two threads then wait on each other at every op)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_small_network_beats_constant_and_flat_ground_depth_on_held_out_streets(one_thread):
    torch.manual_seed(0)
    train = collate_surround(list(SurroundSimDataset('train', 48, SIZE, frames_per_scene=2)))
    test = collate_surround(list(SurroundSimDataset('test', 16, SIZE, frames_per_scene=2)))
    images, depth, mask = (train[k].flatten(0, 1) for k in ('image', 'depth', 'depth_mask'))
    net = TinyMonodepth()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(STEPS):
        idx = torch.randint(0, len(images), (16,))
        pred = net(images[idx])
        m = mask[idx]
        loss = (torch.log(pred[m]) - torch.log(depth[idx][m])).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    t_images, t_depth, t_mask = (test[k].flatten(0, 1) for k in ('image', 'depth', 'depth_mask'))
    with torch.no_grad():
        pred = torch.cat([net(t_images[i:i + 32]) for i in range(0, len(t_images), 32)])
    h, w = SIZE[1], SIZE[0]
    median = float(depth[mask].median())
    K, T = test['K'].flatten(0, 1), test['T_base_cam'].flatten(0, 1)
    scores = {
        'network': _abs_rel(pred, t_depth, t_mask),
        'constant (train median)': _abs_rel(torch.full_like(t_depth, median), t_depth, t_mask),
        'flat ground, max depth above horizon': _abs_rel(_flat_ground(K, T, h, w, MAX_DEPTH), t_depth, t_mask),
        'flat ground, median above horizon': _abs_rel(_flat_ground(K, T, h, w, median), t_depth, t_mask),
    }
    report = ', '.join(f'{k}: {v:.3f}' for k, v in scores.items())
    print(f'\nabs_rel on held-out SurroundSim ({SIZE[0]}x{SIZE[1]}, {STEPS} steps): {report}')
    best_baseline = min(v for k, v in scores.items() if k != 'network')
    assert scores['network'] < best_baseline, report
