"""The bag evaluator on an ONNX export: the same report as with the model file it was exported from (a tiny model,
exported for real and run by ONNX Runtime)."""
from __future__ import annotations

import json

import pytest

from surround_depth_ros.evaluate_bag import main as evaluate_main
from surround_depth_train.export import export_onnx
from surround_depth_train.metrics import METRIC_NAMES


def test_evaluate_bag_on_an_onnx_export_reports_the_model_file_s_numbers(sim, tmp_path, capsys):
    onnx = export_onnx(sim['model'], tmp_path / 'student.onnx', outputs=['depth'], log=lambda _: None).onnx_path
    results = {}
    for name, model, backend in (('torch', sim['model'], 'torch'), ('onnx', onnx, 'onnxruntime')):
        out = tmp_path / name
        assert evaluate_main([str(sim['bag']), '--model', str(model), '--backend', backend, '--out', str(out),
                              '--pictures', '1']) == 0, capsys.readouterr().err
        results[name] = json.loads((out / 'results.json').read_text())
        assert (out / 'results.md').is_file() and (out / 'pictures' / 'mosaic_000.png').is_file()
    got, want = results['onnx'], results['torch']
    assert got['model']['parameters'] is None and want['model']['parameters'] > 0
    assert got['bag']['sets'] == want['bag']['sets'] == 3
    for k in METRIC_NAMES:
        assert got['lidar']['mean'][k] == pytest.approx(want['lidar']['mean'][k], rel=1e-3, abs=1e-6), k
    assert 'report in' in capsys.readouterr().out
