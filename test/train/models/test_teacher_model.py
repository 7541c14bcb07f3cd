"""The Depth Anything metric teacher: official outputs, the official key manifest, shapes and gradients.

Reference fixture (test/fixtures/teacher/official_metric_reduced*.pt, data only): the official Depth-Anything code
(LiheYoung/Depth-Anything @ 1d03336, metric_depth: ZoeDepth(DepthAnythingCore(DPT_DINOv2)) with the vendored
DINOv2 hub code) was run on the CPU outside this repository with a reduced configuration: a DINOv2 ViT of width 64,
4 blocks, 2 heads, position embedding for 224 x 224; DPT features 32, out_channels [16, 32, 64, 64]; the softplus
head with 16 bins and embedding 32 (other options as the outdoor model), input resized to 42 x 70. Weights were
randomly initialised (seeded), constant-initialised tensors perturbed, head weights scaled by 3, and every float
tensor rounded to fp16. ``official_metric_reduced.pt`` is that state dict in the official checkpoint layout
(``{'model': {'module.' + key: fp16 tensor}}``); ``..._io.pt`` holds the config, a 1 x 3 x 40 x 64 input and the
official model's prepared input, relative depth, metric depth, bin centers and probabilities.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch

from surround_depth_train.models import DepthOutput, create_model
from surround_depth_train.models.teacher import DepthAnythingMetric, EncoderSpec, load_depth_anything
from surround_depth_train.models.teacher.checkpoints import official_metric_key
from surround_depth_train.models.teacher.depth_anything import network_size

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures' / 'teacher'


def _reference_model(**overrides) -> tuple[DepthAnythingMetric, dict]:
    io = torch.load(FIXTURES / 'official_metric_reduced_io.pt', weights_only=True)
    c = io['config']
    kwargs = dict(encoder=EncoderSpec(c['embed_dim'], c['depth'], c['num_heads'], c['features'],
                                      tuple(c['out_channels'])),
                  pretrain_size=c['pretrain_size'], n_bins=c['n_bins'], bin_embedding_dim=c['bin_embedding_dim'],
                  input_size=tuple(c['network_size']), min_depth=c['min_depth'], max_depth=c['max_depth'])
    model = DepthAnythingMetric(**{**kwargs, **overrides}).eval()
    load_depth_anything(model, FIXTURES / 'official_metric_reduced.pt')
    return model, io


def test_teacher_reproduces_the_official_outputs_of_an_official_layout_checkpoint():
    model, io = _reference_model()
    with torch.no_grad():
        x = model.prepare(io['input'])
        bins, dpt = model.forward_network(x)
    torch.testing.assert_close(x, io['prepared'], atol=1e-6, rtol=0)
    torch.testing.assert_close(dpt.rel_depth, io['rel_depth'], atol=1e-5, rtol=0)
    torch.testing.assert_close(bins.centers, io['centers'], atol=1e-5, rtol=0)
    torch.testing.assert_close(bins.probs, io['probs'], atol=1e-5, rtol=0)
    torch.testing.assert_close(bins.depth, io['depth'], atol=1e-5, rtol=0)


def test_configured_attractor_alpha_of_1000_would_not_reproduce_the_official_centers():
    # The official attractors ignore their configured alpha (1000) and use 300; this pins why our default is 300.
    model, io = _reference_model(attractor_alpha=1000.0)
    with torch.no_grad():
        bins, _ = model.forward_network(model.prepare(io['input']))
    assert (bins.centers - io['centers']).abs().max() > 1e-3


def test_teacher_output_is_at_the_input_resolution_with_depth_the_expected_bin_center():
    model, io = _reference_model()
    with torch.no_grad():
        out = model(io['input'])
    assert isinstance(out, DepthOutput)
    assert out.depth.shape == (1, 1, 40, 64)
    assert out.centers.shape == out.probs.shape == (1, 16, 40, 64)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(1, 40, 64))
    torch.testing.assert_close(out.depth, (out.probs * out.centers).sum(1, keepdim=True))


def test_vitl_teacher_matches_the_official_metric_checkpoint_manifest():
    manifest = json.loads(resources.files('surround_depth_train.models.teacher')
                          .joinpath('manifest_vitl_metric.json').read_text())
    with torch.device('meta'):
        model = create_model('depth_anything_vitl_metric')
    ours = {official_metric_key(k): {'shape': list(v.shape), 'dtype': str(v.dtype).removeprefix('torch.')}
            for k, v in model.state_dict().items()}
    assert sorted(set(manifest['tensors']) - set(ours)) == []
    assert sorted(set(ours) - set(manifest['tensors'])) == []
    assert ours == manifest['tensors']
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == manifest['num_parameters']
    assert round(n_params / 1e6, 2) == 335.79


@pytest.mark.parametrize('name,embed_dim,features', [('depth_anything_vits_metric', 384, 64),
                                                      ('depth_anything_vitb_metric', 768, 128)])
def test_smaller_teachers_use_the_relative_models_widths(name, embed_dim, features):
    with torch.device('meta'):
        model = create_model(name)
    sd = model.state_dict()
    assert sd['pretrained.patch_embed.proj.weight'].shape[0] == embed_dim
    assert sd['depth_head.scratch.layer1_rn.weight'].shape[0] == features
    assert sd['bins.conv2.weight'].shape[:2] == (features, features)


def test_tiny_teacher_forward_backward_gives_finite_gradients_and_coarse_to_fine_features():
    torch.manual_seed(0)
    model = create_model('depth_anything_tiny_metric', input_size=None)
    images = torch.rand(2, 3, 70, 112)
    out = model(images)
    assert out.depth.shape == (2, 1, 70, 112)
    assert out.centers.shape == out.probs.shape == (2, 64, 70, 112)
    assert [f.shape[-2:] for f in out.features] == [(5, 8), (10, 16), (20, 32), (40, 64)]
    assert model.has_bins and model.min_depth == 1e-3 and model.max_depth == 80.0
    out.depth.mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.pretrained.patch_embed.proj.weight.grad.abs().sum() > 0


def test_vits_teacher_runs_a_small_batch():
    torch.manual_seed(0)
    model = create_model('depth_anything_vits_metric', input_size=70).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 70, 112))
    assert out.depth.shape == (1, 1, 70, 112)
    assert torch.isfinite(out.depth).all() and (out.depth > 0).all()


@pytest.mark.parametrize('size,input_size,expected', [
    ((384, 640), 518, (518, 868)),   # short side 518, aspect kept, long side to the nearest multiple of 14
    ((352, 640), 518, (518, 938)),
    ((70, 112), None, (70, 112)),
    ((75, 100), None, (70, 98)),
    ((400, 600), (392, 518), (392, 518)),
])
def test_network_size_is_a_multiple_of_14_by_the_documented_rule(size, input_size, expected):
    assert network_size(*size, input_size) == expected


def test_teacher_rejects_integer_images_and_wrong_channels():
    model = create_model('depth_anything_tiny_metric')
    with pytest.raises(TypeError, match=r'float RGB in \[0, 1\]'):
        model(torch.zeros(1, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'\[B, 3, H, W\]'):
        model(torch.zeros(1, 1, 28, 28))


def test_teacher_rejects_an_unknown_encoder_name():
    with pytest.raises(ValueError, match='vitl'):
        DepthAnythingMetric(encoder='vith')
