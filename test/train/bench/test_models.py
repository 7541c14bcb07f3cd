"""The model latency benchmark runs end to end on tiny models."""
from __future__ import annotations

from surround_depth_train.bench.models import main


def test_benchmark_prints_table_targets_and_profile(capsys):
    assert main(['--models', 'tiny_student', '--teachers', '', '--size', '64x48', '--batch', '2', '--repeats', '1',
                 '--profile']) == 0
    out = capsys.readouterr().out
    assert 'tiny_student_mb' in out and 'head cost' in out and 'profile of tiny_student_mb' in out
    assert 'teacher speed-up: not measured' in out
    assert 'tiny_student_mb depth only' in out and 'with C and P at full resolution' in out
    assert 'allocator:' in out and 'head stage 0' in out and 'head full-res output' in out
