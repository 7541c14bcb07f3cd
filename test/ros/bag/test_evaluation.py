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


def test_evaluate_bag_at_another_input_size_warns_once_and_refuses_one_the_network_cannot_take(sim, tmp_path, capsys,
                                                                                           caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger='surround_depth.engine'):
        assert evaluate_main([str(sim['bag']), '--model', str(sim['model']), '--input-size', '96', '128',
                              '--out', str(tmp_path / 'other'), '--pictures', '0']) == 0
    sizes = [r.getMessage() for r in caplog.records if 'trained at' in r.getMessage()]
    assert len(sizes) == 1 and 'trained at 96 x 64 (w x h) and runs at 128 x 96' in sizes[0]
    capsys.readouterr()
    assert evaluate_main([str(sim['bag']), '--model', str(sim['model']), '--input-size', '16', '200',
                          '--out', str(tmp_path / 'never')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: input_size [16, 200]: ') and 'at least 33 pixels' in err
    assert len(err.splitlines()) == 1 and not (tmp_path / 'never').exists()
