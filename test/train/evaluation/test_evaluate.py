"""The evaluation command end to end on a tiny model file, the Table I layout, and non-finite predictions."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from surround_depth_train.data.surroundsim import SurroundSimDataset
from surround_depth_train.evaluate import main
from surround_depth_train.evaluation.report import TABLE_COLUMNS, metrics_table
from surround_depth_train.evaluation.runner import evaluate_model
from surround_depth_train.metrics import METRIC_NAMES
from surround_depth_train.models import create_model
from surround_depth_train.models.modelfile import save_model

CAMERAS = ['front', 'front_left', 'back_left', 'back', 'back_right', 'front_right']


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('model') / 'model.pt'
    model = create_model('tiny_student_mb', min_depth=0.5, max_depth=80.0)
    save_model(path, model, name='tiny_student_mb', kwargs={'min_depth': 0.5, 'max_depth': 80.0},
               input_size=(64, 96))
    return path


def test_evaluate_command_writes_table_json_and_pictures(model_file, tmp_path, capsys):
    out = tmp_path / 'eval'
    args = ['--model', str(model_file), '--out', str(out), '--pictures', '1', '--latency-runs', '1',
            'data.val_samples=2']
    assert main(args) == 0
    result = json.loads((out / 'results.json').read_text())
    assert result['model']['name'] == 'tiny_student_mb' and result['model']['parameters'] > 0
    assert result['dataset']['image_size'] == [96, 64]
    assert result['dataset']['samples'] == 2 and result['latency']['median_ms'] > 0
    for section in ('lidar', 'dense'):
        assert set(result[section]['mean']) == set(METRIC_NAMES)
        assert list(result[section]['cameras']) == CAMERAS
    assert list(result['consistency']['pairs']) == [f'{a}-{b}' for a, b in zip(CAMERAS, CAMERAS[1:] + CAMERAS[:1])]
    assert result['consistency']['dense_reference'] < 1e-3
    assert result['nonfinite']['pixels_total'] == 0
    # per-scene metrics: val_samples=2 are two frames of one scene (4 frames per scene)
    assert list(result['lidar']['per_scene']) == ['surroundsim-1000000']
    assert result['lidar']['per_scene']['surroundsim-1000000']['abs_rel'] == pytest.approx(
        result['lidar']['mean']['abs_rel'], rel=1e-6)
    md = (out / 'results.md').read_text()
    assert '| ' + ' | '.join(TABLE_COLUMNS) + ' |' in md
    assert md.count('| **tiny_student_mb** (rig)') == 2  # LiDAR and dense GT, separately
    assert all(f'| &nbsp;&nbsp;{cam} |' in md for cam in CAMERAS)
    for picture in result['pictures']:
        data = (out / picture).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 1000
    assert {p.split('/')[-1][:3] for p in result['pictures']} == {'mos', 'bev'}

    # the same model as its own baseline: Delta_T = 0 over the rig and per camera
    again = tmp_path / 'again'
    assert main(args[:2] + ['--out', str(again), '--pictures', '0', '--latency-runs', '1', '--no-consistency',
                            '--baseline', str(out / 'results.json'), 'data.val_samples=2']) == 0
    assert list(json.loads((again / 'results.json').read_text())['lidar']['per_scene']) == ['surroundsim-1000000']
    md = (again / 'results.md').read_text()
    assert '(baseline)' in md and md.count('| +0.00 |') == 2 * (1 + len(CAMERAS))  # LiDAR and dense tables
    assert json.loads((again / 'results.json').read_text())['baseline']['delta_t'] == 0.0


def test_evaluate_refuses_bad_input_with_one_line(model_file, tmp_path, capsys):
    assert main(['--model', str(model_file), 'optim.lr=1']) == 2
    assert 'data.* overrides only' in capsys.readouterr().err
    assert main(['--model', str(model_file), '--baseline', str(tmp_path / 'none.json')]) == 2
    assert 'no file at' in capsys.readouterr().err
    assert main(['--model', str(tmp_path / 'missing.pt')]) == 2
    assert 'no model file' in capsys.readouterr().err
    assert main(['--model', str(model_file), '--samples', '0']) == 2
    assert 'at least one camera set' in capsys.readouterr().err
    assert main(['--model', str(model_file), '--dataset', 'nuscenes']) == 2  # through the trainer's builder
    assert 'data.root' in capsys.readouterr().err


class NaNCorner(nn.Module):
    """Wraps a model and makes a 2 x 3 corner of the first image of every batch NaN."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images, depth_only=False):
        out = self.model(images, depth_only=depth_only)
        out.depth = out.depth.clone()
        out.depth[0, :, :2, :3] = float('nan')
        return out


def test_non_finite_predictions_are_counted_and_reported(model_file):
    from surround_depth_train.evaluation.report import render_markdown
    from surround_depth_train.models.modelfile import load_model

    model, _ = load_model(model_file)
    ds = SurroundSimDataset('val', 2, (96, 64))
    run = evaluate_model(NaNCorner(model), ds, pictures=0, latency_runs=1, consistency=False, progress=False)
    nf = run['nonfinite']
    assert nf['pixels'] == {cam: (12 if cam == 'front' else 0) for cam in CAMERAS}
    assert nf['images'] == {cam: (2 if cam == 'front' else 0) for cam in CAMERAS}
    expected_gt = sum(int(ds[i]['depth_mask'][0, 0, :2, :3].sum()) for i in range(2))
    assert nf['gt_pixels']['front'] == expected_gt and nf['pixels_total'] == 12
    result = {'model': {'name': 'nan', 'path': 'x', 'parameters': 1},
              'dataset': {'name': 'surroundsim', 'split': 'val', 'samples': 2, 'image_size': [96, 64],
                          'gt_resolution': '96 x 64', 'min_depth': 0.5, 'max_depth': 80.0}, **run}
    assert '**12 predicted pixels were not finite** (2 images)' in render_markdown(result)


def test_metrics_table_has_the_paper_columns_and_formats_missing_values():
    metrics = dict(zip(METRIC_NAMES, (0.191, 1.5, 10.2, 0.25, 0.8, 0.9, 0.95)))
    table = metrics_table([('base', 14_329_236, 3.75, metrics, None), ('ours', 15_030_437, 12.77, metrics, 4.64),
                           ('cam', None, None, None, None)]).splitlines()
    assert table[0] == ('| Method | Params | Latency | AbsRel ↓ | SqRel ↓ | RMSE ↓ | RMSElog ↓ | δ<1.25 ↑ | '
                        'δ<1.25² ↑ | δ<1.25³ ↑ | Δ_T (%) ↑ |')
    assert table[2] == '| base | 14.33 M | 3.75 ms | 0.191 | 1.500 | 10.200 | 0.250 | 0.800 | 0.900 | 0.950 | - |'
    assert table[3].endswith('| +4.64 |') and 'no valid pixels' in table[4]
    assert all(row.count('|') == len(TABLE_COLUMNS) + 1 for row in table)


@pytest.mark.parametrize('dataset, root_fixture, native', [('nuscenes', 'nuscenes_root', '800 x 450'),
                                                           ('ddad', 'ddad_root', '484 x 304')])
def test_evaluate_reads_the_real_dataset_fixtures_through_the_trainer_builder(model_file, tmp_path, request,
                                                                              dataset, root_fixture, native):
    root = request.getfixturevalue(root_fixture)
    extra = ['data.version=v1.0-mini'] if dataset == 'nuscenes' else []
    out = tmp_path / dataset
    assert main(['--model', str(model_file), '--dataset', dataset, '--out', str(out), '--pictures', '1',
                 '--latency-runs', '1', f'data.root={root}', *extra]) == 0
    result = json.loads((out / 'results.json').read_text())
    assert result['dataset']['gt_resolution'] == f'{native} (native)'  # prediction upsampled to the LiDAR GT
    assert result['lidar']['mean'] is not None and result['dense'] is None
    assert result['consistency']['poses'].startswith("each camera's stamp")
    assert len(result['pictures']) == 2


def test_a_teacher_model_file_evaluates_like_a_student(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / 'teacher.pt'
    kwargs = {'min_depth': 0.5, 'max_depth': 80.0, 'n_bins': 16, 'input_size': 56}
    save_model(path, create_model('depth_anything_tiny_metric', **kwargs), name='depth_anything_tiny_metric',
               kwargs=kwargs, input_size=(64, 96))
    assert main(['--model', str(path), '--out', str(tmp_path / 'eval'), '--pictures', '0', '--latency-runs', '1',
                 'data.val_samples=1']) == 0
    result = json.loads((tmp_path / 'eval' / 'results.json').read_text())
    assert result['model']['name'] == 'depth_anything_tiny_metric' and result['lidar']['mean'] is not None


class ScaledDenseTruth(nn.Module):
    """Predicts the dataset's exact dense depth of the batch, times a factor (set before each call)."""

    def __init__(self, dataset, factor: float):
        super().__init__()
        self.depths = [dataset[i]['depth_dense'] for i in range(len(dataset))]
        self.factor, self.calls = factor, 0

    def forward(self, images, depth_only=False):
        from surround_depth_train.models.output import DepthOutput

        depth = self.depths[self.calls % len(self.depths)].clone() * self.factor
        self.calls += 1
        return DepthOutput(depth=depth.clamp_min(1e-3))


def test_median_scaled_metrics_measure_structure_whatever_the_scale():
    ds = SurroundSimDataset('val', 2, (96, 64))
    runs = {f: evaluate_model(ScaledDenseTruth(ds, f), ds, pictures=0, latency_runs=1, consistency=False,
                              progress=False) for f in (1.0, 1.5)}
    assert runs[1.0]['lidar']['mean']['abs_rel'] < 0.05  # the dense truth against the LiDAR of the same frame
    assert runs[1.5]['lidar']['mean']['abs_rel'] == pytest.approx(0.5, abs=0.05)
    structure = {f: r['lidar_median_scaled']['mean'] for f, r in runs.items()}
    assert structure[1.5]['abs_rel'] == pytest.approx(structure[1.0]['abs_rel'], abs=1e-4)  # scale removed
    assert structure[1.5]['a1'] == pytest.approx(structure[1.0]['a1'], abs=1e-4) and structure[1.5]['a1'] > 0.95
