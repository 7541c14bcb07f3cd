"""Bad input to ``surround_depth_demo``: found in the first seconds, one ``error:`` line naming the problem and the
fix, exit status 2, no output folder."""
import pytest

pytest.importorskip('rclpy')

from surround_depth_ros.demo import main  # noqa: E402
from surround_depth_train.models import create_model, save_model  # noqa: E402

CASES = [
    (['--baseline', '{tmp}/notes.txt', '--distilled', '{tmp}/model.pt'], '--baseline: {tmp}/notes.txt does not load'),
    (['--baseline', '{tmp}/model.pt', '--distilled', '{tmp}/missing.pt'], '--distilled {tmp}/missing.pt: no such file'),
    (['--baseline', '{tmp}/model.pt', '--distilled', '{tmp}/teacher.pt'],
     'holds the teacher depth_anything_tiny_metric, which the node does not deploy'),
    (['--baseline', '{tmp}/student.onnx', '--distilled', '{tmp}/model.pt'], 'is an ONNX export; the demo deploys'),
    (['--baseline', '{tmp}/model.pt', '--distilled', '{tmp}/model.pt', '--out', '{tmp}/notes.txt/demo'],
     '--out: {tmp}/notes.txt/demo cannot be created'),
    (['--quick', '--frames', '0'], '--frames 0: the bag needs at least one frame'),
    (['--quick', '--rate', '0'], '--rate 0: the replay rate must be positive'),
]


@pytest.mark.parametrize('args, fragment', CASES)
def test_bad_input_ends_in_one_line_with_status_2_and_no_output_folder(tmp_path, capsys, args, fragment):
    save_model(tmp_path / 'model.pt', create_model('tiny_student'), name='tiny_student', kwargs={},
               input_size=(64, 96))
    kwargs = {'input_size': [28, 42], 'n_bins': 16}
    save_model(tmp_path / 'teacher.pt', create_model('depth_anything_tiny_metric', **kwargs),
               name='depth_anything_tiny_metric', kwargs=kwargs, input_size=(28, 42))
    (tmp_path / 'notes.txt').write_text('not a model')
    (tmp_path / 'student.onnx').write_bytes(b'\x08\x08\x12\x07pytorch')
    before = sorted(tmp_path.iterdir())
    args = [a.format(tmp=tmp_path) for a in args]
    args += [] if '--out' in args else ['--out', str(tmp_path / 'demo')]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert fragment.format(tmp=tmp_path) in err
    assert sorted(tmp_path.iterdir()) == before
