"""The torch vs ONNX Runtime benchmark runs end to end (one timed run at a tiny size; no timing is judged)."""
from __future__ import annotations

from surround_depth_train.bench.onnx import main


def test_onnx_benchmark_prints_torch_and_onnxruntime_side_by_side_with_their_ratio(capsys):
    assert main(['--size', '96x64', '--batch', '2', '--repeats', '1', '--models', 'tiny_student_mb',
                 '--levels', 'all,disable', '--threads', '1', '--confidence']) == 0
    out = capsys.readouterr().out
    assert '1 intra-op threads, sequential execution, graph optimisation all/disable' in out
    for backend in ('torch', 'onnxruntime all', 'onnxruntime disable'):
        assert f'tiny_student_mb        {backend}' in out
    assert 'tiny_student_mb: best ONNX Runtime setting' in out
