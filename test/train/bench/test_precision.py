"""The reduced-precision benchmark runs end to end at a tiny size: four paths per model, and the same four with the
bins head at half resolution, each with its speed against fp32 torch and its test-split accuracy (no timing is
judged)."""
from __future__ import annotations

import re

import pytest
import torch

from surround_depth_train.bench.precision import PATHS, main
from surround_depth_train.models import create_model, save_model


@pytest.fixture(scope='module')
def tiny_mb(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('bench_precision') / 'tiny_mb.pt'
    return save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=(64, 96))


def test_precision_benchmark_prints_four_paths_with_speed_and_accuracy_side_by_side(tiny_mb, tmp_path, capsys):
    code = main(['--models', f'monodepth2_mb={tiny_mb}', '--size', '96x64', '--repeats', '1', '--threads', '1',
                 '--calibration-samples', '1', '--eval-samples', '1', f'data.cache_dir={tmp_path}',
                 'data.test_samples=1'])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r'^monodepth2_mb\s+((?:fp32 torch|bf16 torch|fp32 onnxruntime|int8 onnxruntime)(?:, bins 1/2)?)'
        r'(?: \([a-z, ]+\))?\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)\s+([\d.]+)\s+([+-][\d.]+)%$', out,
        re.MULTILINE)}
    assert set(rows) == {path + head for head in ('', ', bins 1/2') for path in PATHS}
    assert rows['fp32 torch'][2] == '1.00' and rows['fp32 torch'][5] == '+0.00'
    assert all(0.0 < float(r[3]) for r in rows.values())  # an AbsRel for every path
    assert 'accuracy: tiny_student_mb at 96x64' in out
    assert 'own-size' not in out  # timed at the model's own size: no second latency
    assert re.search(r'monodepth2_mb: fastest path within 2 % of fp32 AbsRel: .* at [\d.]+x fp32 torch, AbsRel '
                     r'[+-][\d.]+ % \(target >= 2x\): (met|MISSED)', out)


def test_a_student_without_metric_bins_gets_the_four_paths_and_a_note(tmp_path, capsys):
    torch.manual_seed(0)
    plain = save_model(tmp_path / 'plain.pt', create_model('tiny_student'), name='tiny_student', kwargs={},
                       input_size=(64, 96))
    code = main(['--models', f'plain={plain}', '--size', '96x64', '--repeats', '1', '--threads', '1',
                 '--calibration-samples', '1', '--eval-samples', '1', f'data.cache_dir={tmp_path}',
                 'data.test_samples=1'])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith('plain ')]
    assert len(lines) == 4 and not any(', bins 1/' in line for line in lines)
    assert 'fp32 torch (no MetricBins head: no bins 1/N rows)' in lines[0]


def test_precision_benchmark_names_a_missing_model_file_in_one_line(tmp_path, capsys):
    assert main(['--models', f'monodepth2_mb={tmp_path / "missing.pt"}']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: no model file for monodepth2_mb=') and err.count('\n') == 1


def test_precision_benchmark_refuses_a_models_entry_without_a_label(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--models', 'model.pt'])
    assert exit_info.value.code == 2 and 'LABEL=MODEL_FILE' in capsys.readouterr().err


def test_an_int8_export_refused_at_the_models_size_becomes_a_note_in_its_row_not_an_error(tiny_mb, tmp_path,
                                                                                         capsys, monkeypatch):
    from surround_depth_train.export import int8
    from surround_depth_train.export.onnx_export import ExportError

    real = int8.export_int8

    def refuse_at_the_evaluation_size(model_path, output, *args, **kwargs):
        if '_eval' in str(output):  # the graph at the model's own size, where the accuracy check applies
            raise ExportError('the int8 graph differs from fp32 by a median 0.0924 of the depth, above 0.05; '
                              'nothing was written')
        assert kwargs['int8_tolerance'] == float('inf')  # the timed graph: latency only
        return real(model_path, output, *args, **kwargs)

    monkeypatch.setattr(int8, 'export_int8', refuse_at_the_evaluation_size)
    code = main(['--models', f'light={tiny_mb}', '--size', '128x64', '--repeats', '1', '--threads', '1',
                 '--calibration-samples', '1', '--eval-samples', '1', f'data.cache_dir={tmp_path}',
                 'data.test_samples=1'])
    out = capsys.readouterr().out
    assert code == 0, out
    int8_row = next(line for line in out.splitlines() if line.startswith('light') and 'int8 onnxruntime' in line)
    assert 'int8 export refused: the int8 graph differs from fp32 by a median 0.0924' in int8_row
    assert int8_row.split()[-3:] == ['nan', 'nan', 'nan']  # timed at 128x64 only: no accuracy, no own-size time
    assert re.search(r'light: fastest path within 2 % of fp32 AbsRel: [a-z0-9 ]+(, bins 1/2)? at [\d.]+ sets/s, '
                     r'AbsRel [+-][\d.]+ % .*: (met|MISSED); at its own input size [\d.]+ sets/s', out)
