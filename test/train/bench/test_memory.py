"""The memory benchmark runs a README training command in its own process and reports that process's peak RSS."""
import json

from surround_depth_train.bench.memory import COMMANDS, main

TINY = ['model.name=tiny_student_mb', 'data.image_size=[64,64]', 'data.train_samples=2', 'data.val_samples=1',
        'teacher.name=depth_anything_tiny_metric', 'teacher.kwargs={input_size: [28, 42], n_bins: 16}',
        'model.kwargs={bins: {n_bins: 16}}']


def test_every_readme_training_command_is_measured():
    readme = (__import__('pathlib').Path(__file__).resolve().parents[3] / 'README.md').read_text()
    for args in COMMANDS.values():
        assert f'-m surround_depth_train.train {" ".join(args)}' in readme, args


def test_a_command_runs_its_steps_in_its_own_process_and_its_peak_rss_is_reported(tmp_path, capsys):
    out = tmp_path / 'memory.json'
    assert main(['--steps', '1', '--only', 'student_kd', '--json', str(out), *TINY,
                 f'data.cache_dir={tmp_path / "render_cache"}']) == 0
    row = json.loads(out.read_text())['student_kd']
    assert row['status'] == 0 and 0.3 < row['peak_rss_gb'] < 16  # torch alone takes a few hundred MB
    assert row['command'].startswith('train --config config/train/surroundsim_student_kd.yaml epochs=2')
    assert f'| `{row["command"]}' in capsys.readouterr().out
