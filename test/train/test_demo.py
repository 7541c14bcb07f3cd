"""The training demo's command line. Its stages run end to end, at smoke-test scale, inside the README's main
command (the whole chain), in test/ros/test_demo.py."""
import pytest

from surround_depth_train.demo import main


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path), '--stages', 'world,train'])


@pytest.mark.parametrize('args, fragment', [
    (['--out', '{tmp}/notes.txt/demo'], '--out: {tmp}/notes.txt/demo cannot be created: {tmp}/notes.txt is a file'),
    (['--out', '/proc/surround_depth_demo'], '--out: cannot write /proc/surround_depth_demo'),
    (['--out', '{tmp}/demo', '--frames', '0'], '--frames 0: render at least one frame'),
])
def test_bad_input_ends_in_one_line_with_status_2_and_writes_nothing(tmp_path, capsys, args, fragment):
    (tmp_path / 'notes.txt').write_text('not a folder')
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1 and fragment.format(tmp=tmp_path) in err
    assert [p.name for p in tmp_path.iterdir()] == ['notes.txt']
