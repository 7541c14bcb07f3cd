"""Bad input to ``evaluate_live``, and a run that receives nothing: one ``error:`` line naming the problem and the
fix, exit status 2, nothing written."""
from pathlib import Path

import pytest

pytest.importorskip('rclpy')

from surround_depth_ros.evaluate_live import main  # noqa: E402

pytestmark = [pytest.mark.ros]

RIG = Path(__file__).resolve().parents[2] / 'config' / 'rigs' / 'surroundsim.yaml'

CASES = [
    (['--rig', '{tmp}/missing.yaml'], 'missing.yaml'),
    (['--out', '{tmp}/notes.txt/live'], '--out: {tmp}/notes.txt/live cannot be created'),
    (['--mask-files', '{tmp}/notes.txt'], '--mask-files: 1 given for the 6 cameras'),
    (['--min-depth', '9', '--max-depth', '3'], 'the depth range must satisfy 0 < min < max'),
    (['--idle-timeout', '0'], '--idle-timeout 0: must be positive'),
    # nothing publishes in this domain: it gives up after --first-timeout, writing nothing
    (['--first-timeout', '1'], 'error: no depth image arrived in 1 s (/front/depth/image, /front_left/depth/image'),
]


@pytest.mark.parametrize('args, fragment', CASES)
def test_bad_input_and_silence_end_in_one_line_with_status_2_and_write_nothing(tmp_path, capsys, monkeypatch, args,
                                                                               fragment):
    monkeypatch.setenv('ROS_DOMAIN_ID', '93')
    (tmp_path / 'notes.txt').write_text('not a folder')
    args = [a.format(tmp=tmp_path) for a in args]
    defaults = {'--rig': str(RIG), '--out': str(tmp_path / 'live')}
    args += [x for k, v in defaults.items() if k not in args for x in (k, v)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert fragment.format(tmp=tmp_path) in err
    assert [p.name for p in tmp_path.iterdir()] == ['notes.txt']
