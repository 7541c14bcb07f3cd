"""Bad input to ``export``: one ``error:`` line naming the problem and the fix, exit status 2, nothing written,
before the model is traced."""
from pathlib import Path

import pytest

from surround_depth_train.export.__main__ import main
from surround_depth_train.models import create_model, save_model


@pytest.fixture
def root(tmp_path) -> Path:
    save_model(tmp_path / 'model.pt', create_model('tiny_student'), name='tiny_student', kwargs={},
               input_size=(64, 96))
    (tmp_path / 'notes.txt').write_text('not a model')
    (tmp_path / 'student.onnx').write_bytes(b'\x08\x08\x12\x07pytorch')
    return tmp_path


CASES = [
    (['--model', '{root}/missing.pt'], 'no model file at'),
    (['--model', '{root}/notes.txt'], 'does not load with torch.load'),
    (['--model', '{root}/student.onnx'], 'is an ONNX export, not a model file'),
    (['--output', '{root}/student.txt'], 'should end in .onnx'),
    (['--output', '{root}/notes.txt/student.onnx'], '--output: {root}/notes.txt/student.onnx cannot be created'),
    (['--output', '/proc/student.onnx'], '--output: cannot write /proc/student.onnx'),
    (['--opset', '7'], 'opset 7 is too old'),
    (['--max-batch', '0'], 'max_batch must be at least 1'),
    (['--outputs', 'depth,normals'], 'normals'),
]


@pytest.mark.parametrize('args, fragment', CASES)
def test_bad_input_ends_in_one_line_with_status_2_and_writes_nothing(root, capsys, args, fragment):
    before = sorted(root.rglob('*'))
    args = [a.format(root=root) for a in args]
    defaults = {'--model': str(root / 'model.pt'), '--output': str(root / 'out' / 'student.onnx')}
    args += [x for k, v in defaults.items() if k not in args for x in (k, v)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert fragment.format(root=root) in err
    assert sorted(root.rglob('*')) == before
