"""The decoders' convolution block: ELU at CPU inference computed in place from exp, the same function as nn.ELU;
autograd and tracing keep nn.ELU."""
import pytest
import torch
from torch.nn import functional as F

from surround_depth_train.models.decoders.conv import ConvBlock, elu_inference_


def test_inference_elu_is_elu_to_float_rounding_in_place_and_channels_last():
    x = torch.randn(2, 16, 24, 40).mul_(4).contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, :4] = torch.tensor([0.0, -1e-8, 1e-8, -80.0])  # zero, both sides of it, and saturation
    expected = F.elu(x.double())
    out = elu_inference_(x)
    assert out is x and out.is_contiguous(memory_format=torch.channels_last)
    assert float((out.double() - expected).abs().max()) <= 1.2e-7


def test_inference_elu_in_bf16_is_within_bf16_rounding_of_elu():
    x = torch.randn(4, 8, 32, 32) * 3
    expected = F.elu(x)
    out = elu_inference_(x.bfloat16()).float()
    # bf16 keeps 8 significant bits: half a step of 2^-8 at the exp's value near 1, relative for larger values
    assert float(((out - expected).abs() / expected.abs().clamp_min(1.0)).max()) <= 2 ** -7


@pytest.mark.parametrize('grad', [True, False])
def test_conv_block_gives_the_same_output_with_and_without_autograd(grad):
    torch.manual_seed(0)
    block = ConvBlock(6, 8)
    x = torch.randn(2, 6, 20, 30)
    with torch.no_grad():
        fast = block(x)
    with torch.set_grad_enabled(grad):
        reference = F.elu(block.conv(x))
    torch.testing.assert_close(fast, reference.detach(), rtol=0, atol=1.2e-7)


def test_a_traced_conv_block_keeps_the_elu_operator():
    block = ConvBlock(3, 4).eval()
    with torch.no_grad():
        graph = torch.jit.trace(block, torch.randn(1, 3, 8, 8))
    kinds = {node.kind() for node in graph.inlined_graph.nodes()}
    assert 'aten::elu' in kinds or 'aten::elu_' in kinds
    assert 'aten::exp_' not in kinds
