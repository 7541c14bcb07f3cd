"""End-to-end training on tiny SurroundSim: learning, exact resume, DDP equivalence, clear errors.

Runs go through ``main`` in this process where nothing needs a separate one (only DDP needs torchrun), so the file
pays for interpreter and torch start-up once.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from surround_depth_train.config import ConfigError, from_mapping
from surround_depth_train.models.modelfile import read_model_file
from surround_depth_train.train import build_trainer, check_resume, main
from surround_depth_train.training.config import TrainConfig
from surround_depth_train.training.trainer import NonFiniteLossError

SIZE = [96, 64]


def tiny(tmp_path: Path, **over) -> dict:
    cfg = {
        'out_dir': str(tmp_path / 'run'), 'epochs': 1, 'batch_size': 2, 'seed': 0, 'tensorboard': False,
        'data': {'image_size': SIZE, 'train_samples': 8, 'val_samples': 2,
                 'cache_dir': str(tmp_path.parent / 'render_cache')},
        'model': {'name': 'tiny_student_mb'},
        'teacher': {'name': 'depth_anything_tiny_metric', 'kwargs': {'input_size': [28, 42], 'n_bins': 16}},
        'loss': {'ckd': 0.1, 'vrkd': 1.0},
        'optim': {'lr': 1e-3, 'scheduler': 'constant', 'encoder_lr_factor': 1.0},
    }
    for key, value in over.items():
        node = cfg
        parts = key.split('.')
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def args_of(cfg: dict, prefix: str = '') -> list[str]:
    out = []
    for k, v in cfg.items():
        if isinstance(v, dict):
            out += args_of(v, f'{prefix}{k}.')
        else:
            out.append(f'{prefix}{k}={json.dumps(v)}')
    return out


def run_cli(args: list[str], env_extra: dict | None = None, torchrun: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1', **(env_extra or {}))
    cmd = [sys.executable, '-m', 'surround_depth_train.train', *args]
    if torchrun:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={torchrun}',
               '-m', 'surround_depth_train.train', *args]
    return subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=600)


def weights(path: Path) -> dict:
    return read_model_file(path)['state_dict']


@pytest.mark.slow
def test_short_run_beats_the_untrained_model_and_a_constant_depth_with_the_teacher_untouched(tmp_path):
    # 6 epochs of 12 single-set steps (half the images per step of batch 2, same step count), validated only at
    # the end (val_every = the last step): it ends near abs_rel 0.27 against 0.45 for the best constant
    cfg = from_mapping(TrainConfig, tiny(tmp_path, epochs=6, batch_size=1, val_every=72, **{
        'data.train_samples': 12, 'data.val_samples': 4, 'data.image_size': [128, 64]}))
    trainer = build_trainer(cfg)
    teacher = trainer.task.teacher
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    before = trainer.validate()['mean']['abs_rel']
    trainer.fit()
    assert trainer.state.global_step == 72
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    after = trainer.last_val['mean']['abs_rel']
    # the best constant depth: the median of the training GT
    gts = np.concatenate([s['depth'][s['depth_mask']].numpy() for s in trainer.train_set])
    const = float(np.median(gts))
    acc = []
    for s in trainer.val_set:
        g = s['depth'][s['depth_mask']].numpy()
        acc.append(np.mean(np.abs(g - const) / g))
    constant_abs_rel = float(np.mean(acc))
    assert after < before and after < constant_abs_rel, (before, after, constant_abs_rel)
    assert (tmp_path / 'run' / 'val_depth.png').is_file() and (tmp_path / 'run' / 'model.pt').is_file()


@pytest.mark.slow
def test_resumed_run_ends_with_weights_equal_to_an_uninterrupted_run(tmp_path):
    over = {'epochs': 2, 'data.flip': True, 'data.color_jitter': 0.2, 'data.num_workers': 2}
    assert main(args_of(tiny(tmp_path / 'a', **over))) == 0
    torch.manual_seed(123)  # the resumed run must not depend on the state this process is left in
    assert main(args_of(tiny(tmp_path / 'b', stop_after_steps=5, **over))) == 0  # mid second epoch
    state = read_model_file(tmp_path / 'b' / 'run' / 'checkpoints' / 'last.pt')
    assert (state['epoch'], state['batch_in_epoch'], state['global_step']) == (1, 1, 5)
    torch.manual_seed(456)
    resident_before_resume_gb = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e9
    # the resumed run may log elsewhere and less often (exempt keys) without losing exactness
    assert main(['--resume', *args_of(tiny(tmp_path / 'b', log_every=1, **over))]) == 0
    a, b = weights(tmp_path / 'a' / 'run' / 'model.pt'), weights(tmp_path / 'b' / 'run' / 'model.pt')
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    # the recorded wall time adds the interrupted part to the resumed one
    first_part = read_model_file(tmp_path / 'b' / 'run' / 'checkpoints' / 'last.pt')['aux_state']['wall_s']
    assert state['aux_state']['wall_s'] > 0
    result = json.loads((tmp_path / 'b' / 'run' / 'result.json').read_text())
    assert result['wall_s'] >= first_part >= state['aux_state']['wall_s'] > 0
    # and the peak memory of the process that trained it (this one): at least what it held before the resume, in GB
    assert resident_before_resume_gb <= result['peak_rss_gb'] < 64
    # the validation history keeps one entry per validated step, the repeated ones replaced
    history = json.loads((tmp_path / 'b' / 'run' / 'val_history.json').read_text())
    assert [h['step'] for h in history] == sorted({h['step'] for h in history}) and history[-1]['step'] == 8


@pytest.mark.slow
def test_two_process_gloo_run_equals_one_process_on_the_same_global_batches(tmp_path):
    # FitNets too: its regressors live in the DDP-wrapped module and must be synchronised like the student
    over = {'epochs': 1, 'model.freeze_bn': True, 'data.train_samples': 8, 'loss.fitnets': 1.0}
    assert main(args_of(tiny(tmp_path / 'single', batch_size=4, **over))) == 0
    ddp = run_cli(args_of(tiny(tmp_path / 'ddp', batch_size=2, **over)), torchrun=2)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    a, b = weights(tmp_path / 'single' / 'run' / 'model.pt'), weights(tmp_path / 'ddp' / 'run' / 'model.pt')
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())
    assert diff < 1e-5, diff
    # both took the same two Adam steps (lr 1e-3 moves weights by ~1e-3, far above the tolerance)
    for run in ('single', 'ddp'):
        opt = read_model_file(tmp_path / run / 'run' / 'checkpoints' / 'last.pt')['optimizer']
        assert {int(s['step']) for s in opt['state'].values()} == {2}


def test_unknown_config_key_is_refused_before_any_work(tmp_path, capsys):
    assert main([f'out_dir={tmp_path}', 'optim.learning_rate=1']) == 2
    err = capsys.readouterr().err
    assert "unknown config key(s) 'optim.learning_rate'" in err and 'valid keys are' in err
    assert not any(tmp_path.iterdir())


def test_missing_dataset_path_is_refused_naming_data_root(tmp_path, capsys):
    assert main([f'out_dir={tmp_path}/run', 'data.dataset=nuscenes', f'data.root={tmp_path}/nowhere']) == 2
    assert 'data.root' in capsys.readouterr().err


def test_teacher_checkpoint_of_another_architecture_is_refused(tmp_path, capsys):
    from surround_depth_train.models import create_model

    wrong = create_model('depth_anything_tiny_metric')
    torch.save({'model': wrong.state_dict()}, tmp_path / 'tiny.pt')
    code = main(args_of(tiny(tmp_path, **{'teacher.name': 'depth_anything_vits_metric',
                                          'teacher.checkpoint': str(tmp_path / 'tiny.pt')})))
    assert code == 2
    assert 'looks like' in capsys.readouterr().err


def test_teacher_cache_with_augmentation_is_refused(tmp_path, capsys):
    assert main(args_of(tiny(tmp_path, **{'teacher.cache': True, 'data.flip': True}))) == 2
    assert 'teacher.cache' in capsys.readouterr().err


def test_student_distillation_without_bins_is_refused(tmp_path, capsys):
    assert main(args_of(tiny(tmp_path, **{'model.name': 'tiny_student'}))) == 2
    assert 'MetricBins' in capsys.readouterr().err


def test_dataset_without_six_cameras_is_refused(tmp_path, monkeypatch):
    import surround_depth_train.training.builders as builders

    real = builders.build_dataset

    class FiveCameras:
        def __init__(self, ds):
            self.ds = ds

        def __getattr__(self, name):
            return getattr(self.ds, name)

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            s = dict(self.ds[i])
            s['image'] = s['image'][:5]
            return s

    monkeypatch.setattr('surround_depth_train.train.build_dataset',
                        lambda data, split: FiveCameras(real(data, split)))
    with pytest.raises(ConfigError, match='expected 6 cameras in cyclic order, got 5'):
        build_trainer(from_mapping(TrainConfig, tiny(tmp_path)))


def test_non_finite_losses_in_a_row_stop_with_the_last_good_checkpoint(tmp_path):
    cfg = from_mapping(TrainConfig, tiny(tmp_path, max_nonfinite=3, **{'loss.ckd': 0.0, 'loss.vrkd': 0.0}))
    trainer = build_trainer(cfg)
    before = {k: v.clone() for k, v in trainer.task.student.state_dict().items()}
    forward = trainer.task.forward

    def poisoned(batch, teacher_out=None):
        out = forward(batch, teacher_out)
        out['loss'] = out['loss'] * float('nan')
        return out

    trainer.task.forward = poisoned
    with pytest.raises(NonFiniteLossError, match='3 non-finite losses in a row.*last good weights'):
        trainer.fit()
    saved = read_model_file(tmp_path / 'run' / 'checkpoints' / 'last.pt')
    assert saved['nonfinite'] == 3
    assert all(torch.equal(saved['state_dict'][k], before[k]) for k in before)


def test_teacher_cache_serves_the_second_epoch_from_disk_with_what_every_term_reads(tmp_path, capsys):
    cfg = from_mapping(TrainConfig, tiny(tmp_path, epochs=2, **{'teacher.cache': True, 'loss.at': 1.0}))
    trainer = build_trainer(cfg)
    cache = trainer.teacher_cache
    assert cache.fields == ('centers', 'probs', 'depth', 'features')
    # 6 cameras x 96 x 64 x (16 centers + 16 probs + 1 depth) + the four paired tiny-teacher features, fp16
    features = sum(f.numel() for f in trainer.task.teacher_outputs(torch.zeros(1, 3, 64, 96)).features)
    expected = 8 * 6 * (33 * 96 * 64 + features) * 2
    assert f'{expected / 1e9:.2f} GB' in capsys.readouterr().out
    trainer.fit()
    assert cache.misses == 8 and cache.hits == 8
    stored = sum(p.stat().st_size for p in cache.dir.iterdir())
    assert expected <= stored < expected * 1.1
    assert (tmp_path / 'run' / 'config.yaml').is_file()


def test_teacher_cache_without_a_term_that_reads_the_teacher_is_refused(tmp_path, capsys):
    assert main(args_of(tiny(tmp_path, **{'teacher.cache': True, 'loss.ckd': 0.0, 'loss.vrkd': 0.0}))) == 2
    assert 'teacher.cache=false' in one_error_line(capsys)


def test_bf16_autocast_on_cpu_trains_with_finite_fp32_losses(tmp_path):
    cfg = from_mapping(TrainConfig, tiny(tmp_path, precision='bf16'))
    trainer = build_trainer(cfg)
    batch = next(iter(trainer._loader(0)))
    logs = trainer.train_step(batch)
    assert logs is not None and all(np.isfinite(v) for v in logs.values())
    assert set(logs) == {'loss', 'sup', 'ckd', 'vrkd'}


def test_a_training_run_records_its_rig_at_the_input_size_in_the_model_file(tmp_path):
    from surround_depth_train.data.surroundsim import surroundsim_rig
    from surround_depth_train.models import ModelInfo

    cfg = from_mapping(TrainConfig, tiny(tmp_path, **{'loss.ckd': 0.0, 'loss.vrkd': 0.0}))
    build_trainer(cfg).fit()
    expected = surroundsim_rig(*SIZE)  # SIZE is (width, height)
    assert 'optimizer' not in read_model_file(tmp_path / 'run' / 'model.pt')  # written without training state
    for path in (tmp_path / 'run' / 'model.pt', tmp_path / 'run' / 'checkpoints' / 'last.pt'):
        info = ModelInfo.read(path)
        assert info.format_version == 2 and info.input_size == (SIZE[1], SIZE[0])
        assert [c['name'] for c in info.training_rig] == expected.names
        for cam, ref in zip(info.training_rig, expected):
            assert (cam['width'], cam['height']) == tuple(SIZE)
            np.testing.assert_allclose(np.array(cam['K']), ref.K, rtol=1e-9)


def test_a_finished_runs_model_file_deploys_without_the_training_state_that_last_pt_keeps(tmp_path):
    from surround_depth_train.models.modelfile import RESERVED_KEYS, load_model
    from surround_depth_train.training.checkpoint import TRAINING_KEYS

    assert main(args_of(tiny(tmp_path, **{'loss.ckd': 0.0, 'loss.vrkd': 0.0}))) == 0
    model_path, last_path = tmp_path / 'run' / 'model.pt', tmp_path / 'run' / 'checkpoints' / 'last.pt'
    model, last = read_model_file(model_path), read_model_file(last_path)
    assert set(model) == set(RESERVED_KEYS)  # weights, model info, training rig: no optimiser, RNG or progress
    assert set(TRAINING_KEYS) <= set(last) and last['optimizer']['state']
    assert {k: model[k] for k in RESERVED_KEYS if k != 'state_dict'} == \
        {k: last[k] for k in RESERVED_KEYS if k != 'state_dict'}
    assert all(torch.equal(v, last['state_dict'][k]) for k, v in model['state_dict'].items())
    assert 2 * model_path.stat().st_size < last_path.stat().st_size  # Adam keeps two moments per weight
    load_model(model_path)


@pytest.fixture(scope='module')
def stopped_run(tmp_path_factory) -> Path:
    """A run stopped after one step: its folder holds checkpoints/last.pt and config.yaml."""
    root = tmp_path_factory.mktemp('stopped')
    assert main(args_of(tiny(root, stop_after_steps=1))) == 0
    return root


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and '\n' not in err and 'Traceback' not in err, err
    return err


def test_resume_with_a_changed_trajectory_key_is_refused_listing_it_before_anything_is_built(stopped_run, capsys,
                                                                                           monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError('the dataset was built before the resume check')

    monkeypatch.setattr('surround_depth_train.train.build_dataset', never)
    args = args_of(tiny(stopped_run, seed=1, **{'optim.lr': 5e-4, 'log_every': 3}))
    assert main(['--resume', *args]) == 2
    err = one_error_line(capsys)
    assert 'optim.lr: 0.001 -> 0.0005' in err and 'seed: 0 -> 1' in err and '--allow-config-change' in err
    assert 'log_every' not in err  # exempt: does not change the trajectory


def test_resume_with_a_changed_config_continues_when_allowed_and_says_it_is_no_longer_exact(stopped_run, capsys):
    cfg = from_mapping(TrainConfig, tiny(stopped_run, seed=1))
    path, data = check_resume(cfg, 'auto', allow_config_change=True)
    assert path == stopped_run / 'run' / 'checkpoints' / 'last.pt' and data['global_step'] == 1
    assert 'no longer an exact continuation' in capsys.readouterr().err


@pytest.mark.parametrize('damage, message', [
    ('empty', 'is empty (0 bytes)'),
    ('truncated', 'cannot be read as a checkpoint (truncated'),
    ('foreign', 'not a training checkpoint'),
    ('other_model', "holds a 'tiny_student' model"),
])
def test_resume_from_an_unusable_checkpoint_ends_in_one_clear_line(stopped_run, tmp_path, capsys, damage,
                                                                  message):
    from surround_depth_train.models import create_model
    from surround_depth_train.models.modelfile import save_model

    path = tmp_path / 'last.pt'
    good = (stopped_run / 'run' / 'checkpoints' / 'last.pt').read_bytes()
    if damage == 'empty':
        path.write_bytes(b'')
    elif damage == 'truncated':
        path.write_bytes(good[:len(good) // 2])
    elif damage == 'foreign':
        save_model(path, create_model('tiny_student'), name='tiny_student', kwargs={}, input_size=(64, 96))
    else:  # a training checkpoint of another model: its config says so
        data = read_model_file(stopped_run / 'run' / 'checkpoints' / 'last.pt')
        data['name'] = 'tiny_student'
        data['config']['model']['name'] = 'tiny_student'
        torch.save(data, path)
    assert main([f'--resume={path}', *args_of(tiny(stopped_run))]) == 2
    err = one_error_line(capsys)
    assert message in err or (damage == 'other_model' and "model.name: 'tiny_student' -> 'tiny_student_mb'" in err)


def test_malformed_yaml_names_the_file_and_line_and_debug_shows_the_traceback(tmp_path, capsys):
    config = tmp_path / 'bad.yaml'
    config.write_text('epochs: 1\nloss:\n  ckd: [0.1\n  vrkd: 1.0\n')
    assert main(['--config', str(config)]) == 2
    err = one_error_line(capsys)
    assert f'{config}:' in err and 'malformed YAML' in err
    line = int(err.split(f'{config}:')[1].split(':')[0])
    assert line in (3, 4)
    with pytest.raises(ConfigError, match='malformed YAML'):
        main(['--debug', '--config', str(config)])


def test_feature_pairs_naming_a_missing_feature_are_refused_listing_both_sides(tmp_path, capsys):
    args = args_of(tiny(tmp_path, **{'loss.ckd': 0.0, 'loss.vrkd': 0.0, 'loss.at': 1.0}))
    assert main([*args, 'loss.feature_pairs=[d32:refinenet4]']) == 2
    err = one_error_line(capsys)
    assert "no feature 'd32'" in err and '0 d16 (64 ch, stride 16)' in err and 'refinenet1' in err
