"""int8 export: a QDQ graph with per-channel int8 weights, calibrated on SurroundSim camera sets recorded in the
sidecar, the bins head and the disparity convolution left in fp32, depth within tolerance of fp32, and the
requests that are refused."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from surround_depth_train.export import read_sidecar
from surround_depth_train.export.__main__ import main
from surround_depth_train.export.calibration import calibration_from_dataset
from surround_depth_train.export.int8 import KEEP_FP32, depth_difference, excluded_nodes, export_int8
from surround_depth_train.export.onnx_export import ExportError
from surround_depth_train.export.runtime import OnnxDepthModel
from surround_depth_train.models import create_model, save_model

INPUT = (64, 96)  # (height, width)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('int8') / 'tiny.pt'
    return save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=INPUT)


@pytest.fixture(scope='module')
def calibration(tmp_path_factory):
    cache = tmp_path_factory.mktemp('surroundsim_cache')
    return calibration_from_dataset([f'data.cache_dir={cache}'], input_size=INPUT, samples=2, check_samples=1)


@pytest.fixture(scope='module')
def int8_export(tmp_path_factory, model_file, calibration):
    output = tmp_path_factory.mktemp('int8_out') / 'student.int8.onnx'
    export_int8(model_file, output, calibration, outputs=('depth', 'confidence'), log=_quiet)
    return output


def test_calibration_takes_camera_sets_of_the_train_split_at_the_model_input_size(calibration):
    assert len(calibration.batches) == 2 and len(calibration.check) == 1
    assert all(b.shape == (6, 3, *INPUT) and b.dtype == np.float32 for b in calibration.batches)
    assert 0.0 <= min(b.min() for b in calibration.batches) and max(b.max() for b in calibration.batches) <= 1.0
    record = calibration.record
    assert (record['dataset'], record['split'], record['image_size']) == ('surroundsim', 'train', [96, 64])
    assert len(record['sets']) == 2 and len(record['check_sets']) == 1
    assert not set(record['sets']) & set(record['check_sets'])


def test_int8_export_is_a_qdq_graph_with_per_channel_int8_weights(int8_export):
    graph = onnx.load(str(int8_export)).graph
    ops = [n.op_type for n in graph.node]
    assert 'QuantizeLinear' in ops and 'DequantizeLinear' in ops
    initializers = {i.name: i for i in graph.initializer}
    weights = [n for n in graph.node if n.op_type == 'DequantizeLinear' and n.input[0] in initializers
               and numpy_helper.to_array(initializers[n.input[0]]).dtype == np.int8
               and numpy_helper.to_array(initializers[n.input[0]]).ndim == 4]
    assert weights, 'no int8 convolution weights'
    assert all(numpy_helper.to_array(initializers[n.input[1]]).size > 1 for n in weights)  # a scale per channel


def test_the_bins_head_and_the_disparity_convolution_stay_fp32(int8_export):
    graph = onnx.load(str(int8_export)).graph
    producers = {out: n for n in graph.node for out in n.output}
    kept = [n for n in graph.node if n.op_type in ('Conv', 'MatMul', 'Gemm')
            and (n.name.startswith('/model/metric_bins/') or 'dispconv' in n.name)]
    assert kept and any('dispconv' in n.name for n in kept)
    for node in kept:
        assert all(producers[i].op_type != 'DequantizeLinear' for i in node.input if i in producers), node.name
    assert any(n.op_type == 'Conv' and n.name.startswith('/model/encoder/') and
               producers.get(n.input[0]) is not None and producers[n.input[0]].op_type == 'DequantizeLinear'
               for n in graph.node)


def test_excluded_nodes_match_the_node_names_by_regular_expression():
    graph = onnx.helper.make_graph([onnx.helper.make_node('Relu', ['x'], ['y'], name=name) for name in (
        '/model/metric_bins/conv2/MatMul', '/model/decoder/dispconv_0/conv/Conv', '/model/decoder/dispConvScale0/Conv',
        '/model/encoder/body/blocks.1/blocks.1.0/conv_dw/Conv', '/model/encoder/body/conv_stem/Conv')], 'g', [], [])
    assert excluded_nodes(onnx.helper.make_model(graph), KEEP_FP32) == [
        '/model/metric_bins/conv2/MatMul', '/model/decoder/dispconv_0/conv/Conv', '/model/decoder/dispConvScale0/Conv',
        '/model/encoder/body/blocks.1/blocks.1.0/conv_dw/Conv']


def test_the_sidecar_records_int8_and_the_calibration_set(int8_export, calibration):
    sidecar = read_sidecar(int8_export)
    assert sidecar['precision'] == 'int8'
    assert sidecar['calibration'] == json.loads(json.dumps(calibration.record))
    assert sidecar['int8']['format'] == 'QDQ' and sidecar['int8']['kept_fp32'] == list(KEEP_FP32)
    assert sidecar['int8']['kept_fp32_nodes'] > 0
    check = sidecar['int8']['check']
    assert check['median'] <= check['tolerance'] and check['sets'] == 1
    assert sidecar['outputs'] == ['depth', 'confidence']


def test_int8_depth_is_within_tolerance_of_fp32(int8_export, model_file, calibration, tmp_path):
    from surround_depth_train.export import export_onnx

    fp32 = OnnxDepthModel(export_onnx(model_file, tmp_path / 'fp32.onnx', log=_quiet).onnx_path)
    int8 = OnnxDepthModel(int8_export)
    assert (fp32.precision, int8.precision) == ('fp32', 'int8')
    images = torch.from_numpy(calibration.check[0])
    reference = fp32.forward(images)[0].numpy().copy()
    depth, confidence = int8.forward(images, confidence=True)
    difference = depth_difference([reference], [depth.numpy()])
    assert difference['median'] < 0.05 and difference['p95'] < 0.25
    assert confidence is not None and float(confidence.min()) >= 0.0 and float(confidence.max()) <= 1.0


def test_int8_export_writes_nothing_when_int8_differs_beyond_the_tolerance(model_file, calibration, tmp_path):
    output = tmp_path / 'student.int8.onnx'
    with pytest.raises(ExportError, match='differs from fp32.*nothing was written'):
        export_int8(model_file, output, calibration, int8_tolerance=0.0, log=_quiet)
    assert not output.exists() and not (tmp_path / 'student.int8.onnx.json').exists()


def test_export_command_writes_an_int8_model_calibrated_on_the_data_it_is_told(model_file, tmp_path):
    output = tmp_path / 'cli.int8.onnx'
    code = main(['--model', str(model_file), '--output', str(output), '--int8', '--calibration-samples', '1',
                 '--check-samples', '1', '--calibration-split', 'val', f'data.cache_dir={tmp_path / "cache"}'])
    assert code == 0
    record = read_sidecar(output)['calibration']
    assert record['split'] == 'val' and record['overrides'] == [f'data.cache_dir={tmp_path / "cache"}']


@pytest.mark.parametrize('args, message', [
    (['data.image_size=[32,32]'], 'data.image_size'),
    (['--calibration-samples', '0'], 'at least one camera set'),
])
def test_export_command_refuses_bad_calibration_requests_in_one_line(model_file, tmp_path, capsys, args, message):
    code = main(['--model', str(model_file), '--output', str(tmp_path / 'x.onnx'), '--int8', *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: ') and message in err and 'Traceback' not in err
    assert not (tmp_path / 'x.onnx').exists()


def test_export_command_says_data_overrides_need_int8(model_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['--model', str(model_file), '--output', str(tmp_path / 'x.onnx'), 'data.dataset=rosbag'])
    assert exit_info.value.code == 2 and 'add --int8' in capsys.readouterr().err
