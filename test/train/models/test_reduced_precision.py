"""bf16 on the CPU: native-bf16 detection from cpuinfo, the refusal elsewhere, and bf16 depth within tolerance of fp32
with the bins head and the disparity convolution kept in fp32."""
from __future__ import annotations

import copy

import pytest
import torch

from surround_depth_train.models import create_model
from surround_depth_train.models.bins import MetricBins
from surround_depth_train.models.reduced_precision import (Bf16Model, PrecisionError, check_cpu_precision,
                                                           fp32_islands, native_bf16)

X86_FLAGS = 'fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni'
IMAGES = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))


def _cpuinfo(tmp_path, key, flags):
    path = tmp_path / 'cpuinfo'
    path.write_text(''.join(f'processor\t: {i}\nmodel name\t: test\n{key}\t\t: {flags}\n\n' for i in range(2)))
    return path


@pytest.mark.parametrize('key, flags, expected', [
    ('flags', X86_FLAGS + ' avx512_bf16', 'avx512_bf16'),
    ('flags', X86_FLAGS + ' amx_bf16 amx_tile avx512_bf16', 'amx_bf16'),
    ('Features', 'fp asimd sve bf16 i8mm', 'bf16'),
    ('flags', X86_FLAGS, None),
])
def test_native_bf16_reads_the_cpuinfo_flags(tmp_path, key, flags, expected):
    assert native_bf16(_cpuinfo(tmp_path, key, flags)) == expected


def test_native_bf16_is_none_without_a_cpuinfo_file(tmp_path):
    assert native_bf16(tmp_path / 'missing') is None


def test_bf16_is_refused_on_a_cpu_without_native_bf16(tmp_path):
    with pytest.raises(PrecisionError, match='AVX512_BF16 or AMX.*precision: fp32'):
        check_cpu_precision('bf16', _cpuinfo(tmp_path, 'flags', X86_FLAGS))
    check_cpu_precision('bf16', _cpuinfo(tmp_path, 'flags', X86_FLAGS + ' avx512_bf16'))
    check_cpu_precision('fp32', _cpuinfo(tmp_path, 'flags', X86_FLAGS))


def test_fp16_is_refused_on_the_cpu():
    with pytest.raises(PrecisionError, match='GPU only'):
        check_cpu_precision('fp16')


def test_the_bins_head_and_the_disparity_convolution_stay_fp32():
    islands = fp32_islands(create_model('tiny_student_mb'))
    assert 'metric_bins' in islands and 'decoder.convs.dispconv_0' in islands
    assert not any(name.startswith('encoder') for name in islands)


def _relative(a, b):
    return ((a.float() - b) / b).abs()


@pytest.mark.parametrize('name', ['tiny_student', 'tiny_student_mb', 'tiny_student_ab'])
def test_bf16_depth_is_within_tolerance_of_fp32(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.inference_mode():
        reference = model(IMAGES, depth_only=True).depth
        depth = Bf16Model(copy.deepcopy(model))(IMAGES, depth_only=True).depth
    assert depth.dtype == torch.float32
    assert float(_relative(depth, reference).max()) < 5e-3


def test_the_fp32_disparity_convolution_removes_most_of_the_bf16_depth_error():
    torch.manual_seed(0)
    model = create_model('tiny_student').eval()
    plain = copy.deepcopy(model)
    with torch.inference_mode():
        reference = model(IMAGES, depth_only=True).depth
        with torch.autocast('cpu', dtype=torch.bfloat16):
            everything_bf16 = plain(IMAGES, depth_only=True).depth
        islands = Bf16Model(copy.deepcopy(model))(IMAGES, depth_only=True).depth
    assert float(_relative(islands, reference).median()) < 0.2 * float(_relative(everything_bf16, reference).median())


@pytest.mark.parametrize('bf16_projections, tolerance', [(False, 1e-4), (True, 5e-3)])
def test_bf16_metric_bins_agree_on_the_banded_and_the_whole_tensor_path(monkeypatch, bf16_projections, tolerance):
    torch.manual_seed(0)
    model = Bf16Model(create_model('tiny_student_mb').eval(), bf16_projections=bf16_projections)
    with torch.inference_mode():
        banded = model(IMAGES, depth_only=True, confidence=True)
        monkeypatch.setattr(MetricBins, 'banded_inference', False)
        whole = model(IMAGES, depth_only=True, confidence=True)
    assert whole.depth.dtype == banded.depth.dtype == torch.float32
    torch.testing.assert_close(whole.depth, banded.depth, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(whole.confidence, banded.confidence, rtol=tolerance, atol=tolerance)


def test_bf16_projections_change_the_banded_head_only_within_bf16_rounding():
    torch.manual_seed(0)
    model = create_model('tiny_student_mb').eval()
    with torch.inference_mode():
        fp32_head = Bf16Model(copy.deepcopy(model), bf16_projections=False)(IMAGES, depth_only=True).depth
        bf16_projections = Bf16Model(copy.deepcopy(model))(IMAGES, depth_only=True).depth
    assert bf16_projections.dtype == torch.float32
    assert not torch.equal(bf16_projections, fp32_head)  # the projections did run in bf16
    assert float(_relative(bf16_projections, fp32_head).max()) < 5e-3


def test_bf16_model_answers_for_the_wrapped_model():
    model = Bf16Model(create_model('tiny_student_mb'))
    assert model.has_bins and model.min_input_side == model.model.min_input_side
