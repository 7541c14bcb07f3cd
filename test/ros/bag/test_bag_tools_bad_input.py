"""Bad input to ``replay`` and ``rig_from_bag``: one ``error:`` line naming the problem and the fix, exit status 2,
nothing written (``rig_from_bag`` checks ``--out`` before it reads the bag)."""
import pytest

pytest.importorskip('rclpy')

from surround_depth_ros.replay import main as replay_main  # noqa: E402
from surround_depth_ros.rig_from_bag import main as rig_main  # noqa: E402

CASES = [
    (replay_main, ['{tmp}/empty'], "bag '{tmp}/empty' cannot be opened"),
    (replay_main, ['{tmp}/notes.txt'], "bag '{tmp}/notes.txt' cannot be opened"),
    (replay_main, ['{tmp}/nowhere'], "bag '{tmp}/nowhere' does not exist"),
    (replay_main, ['{bag}', '--rate', '0'], '--rate 0.0: the rate must be positive'),
    (replay_main, ['{bag}', '--topics', '/nothing'], "--topics ['/nothing'] are not in the bag"),
    (rig_main, ['{tmp}/empty', '--out', '{tmp}/rig.yaml'], "bag '{tmp}/empty' cannot be opened"),
    (rig_main, ['{tmp}/notes.txt', '--out', '{tmp}/rig.yaml'], "bag '{tmp}/notes.txt' cannot be opened"),
    (rig_main, ['{bag}', '--out', '{tmp}/notes.txt/rig.yaml'], '--out: {tmp}/notes.txt/rig.yaml cannot be created'),
    (rig_main, ['{bag}', '--out', '{tmp}/empty'], '--out: {tmp}/empty is a folder; pass a file path'),
    (rig_main, ['{bag}', '--out', '/proc/rig.yaml'], '--out: cannot write /proc/rig.yaml'),
]


@pytest.mark.parametrize('main, args, fragment', CASES)
def test_bad_input_ends_in_one_line_with_status_2_and_writes_nothing(sim, tmp_path, capsys, main, args, fragment):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'notes.txt').write_text('not a bag')
    before = sorted(tmp_path.rglob('*')), sorted(sim['bag'].iterdir())
    assert main([a.format(tmp=tmp_path, bag=sim['bag']) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert fragment.format(tmp=tmp_path) in err
    assert (sorted(tmp_path.rglob('*')), sorted(sim['bag'].iterdir())) == before


def test_rig_from_bag_creates_the_missing_folders_of_out(sim, tmp_path):
    assert rig_main([str(sim['bag']), '--out', str(tmp_path / 'rigs' / 'sim' / 'rig.yaml')]) == 0
    assert (tmp_path / 'rigs' / 'sim' / 'rig.yaml').is_file()
