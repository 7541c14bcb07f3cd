"""Bad input to ``train``: one ``error:`` line naming the key and the fix, exit status 2, nothing written, before any
work; a run's outputs are not trained over without ``--resume`` or ``--overwrite``."""
import json
from pathlib import Path

import pytest

from surround_depth_train.train import main

TINY = ['epochs=1', 'batch_size=2', 'tensorboard=false', 'data.image_size=[64,64]', 'data.train_samples=2',
        'data.val_samples=1', 'model.name=tiny_student_mb', 'loss.ckd=0', 'loss.vrkd=0', 'optim.scheduler=constant']


def _run(tmp_path: Path, capsys, *args: str) -> tuple[int, str]:
    code = main([*TINY, f'data.cache_dir={tmp_path / "render_cache"}', *args])
    err = capsys.readouterr().err
    return code, err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('overrides, fragment', [
    (['batch_size=-2'], 'batch_size: -2 is out of range, it must be at least 1'),
    (['batch_size=0'], 'batch_size: 0 is out of range'),
    (['optim.lr=-1'], 'optim.lr: -1 is out of range, it must be above 0'),
    (['optim.lr=fast'], "optim.lr: expected a number, got 'fast'"),
    (['data.val_samples=0'], 'data.val_samples: 0 is out of range'),
    (['data.train_samples=1'], 'data.train_samples: 1 is fewer than batch_size=2'),
    (['epochs=-1'], 'epochs: -1 is out of range, it must be at least 1'),
    (['epochs=0'], 'epochs: 0 is out of range'),
    (['optim.pct_start=2'], 'optim.pct_start: 2 is out of range'),
    (['loss.sup=-1'], 'loss.sup: -1 is out of range'),
    (['out_dir=/proc/surround_depth_run'], 'out_dir: cannot write /proc/surround_depth_run'),
    (['out_dir={file}/run'], 'is a file, not a folder'),
])
def test_bad_values_end_in_one_line_with_status_2_and_write_nothing(tmp_path, capsys, overrides, fragment):
    a_file = tmp_path / 'notes.txt'
    a_file.write_text('not a folder')
    out = tmp_path / 'run'
    overrides = [o.format(file=a_file) for o in overrides]
    code, err = _run(tmp_path, capsys, f'out_dir={out}', *overrides)
    assert code == 2
    assert err.startswith('error: ') and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ['notes.txt']


def test_a_finished_run_is_not_trained_over_without_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / 'run'
    (out / 'checkpoints').mkdir(parents=True)
    (out / 'model.pt').write_bytes(b'the finished model')
    (out / 'checkpoints' / 'last.pt').write_bytes(b'its checkpoint')
    before = _tree(out)
    code, err = _run(tmp_path, capsys, f'out_dir={out}')
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f'out_dir: {out} holds the outputs of a run (model.pt, checkpoints/last.pt)' in err
    assert '--resume' in err and '--overwrite' in err
    assert _tree(out) == before


def test_overwrite_starts_over_without_the_previous_runs_outputs(tmp_path, capsys):
    out = tmp_path / 'run'
    (out / 'checkpoints').mkdir(parents=True)
    for name in ('model.pt', 'checkpoints/last.pt'):
        (out / name).write_bytes(b'from the previous run')
    (out / 'val_history.json').write_text(json.dumps([{'step': 0, 'mean': None}]))
    (out / 'notes.md').write_text('mine')
    code, _ = _run(tmp_path, capsys, f'out_dir={out}', '--overwrite')
    assert code == 0
    assert (out / 'notes.md').read_text() == 'mine'
    assert all((out / n).read_bytes() != b'from the previous run' for n in ('model.pt', 'checkpoints/last.pt'))
    assert [h['step'] for h in json.loads((out / 'val_history.json').read_text())] == [1]
