"""Bad input to ``evaluate``: one ``error:`` line naming the problem and the fix, exit status 2, nothing written,
before the dataset is built."""
from pathlib import Path

import pytest

from surround_depth_train.evaluate import main
from surround_depth_train.models import create_model, save_model


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    model = save_model(tmp_path / 'run' / 'model.pt', create_model('tiny_student'), name='tiny_student', kwargs={},
                       input_size=(64, 96))
    (tmp_path / 'notes.txt').write_text('not a model')
    (tmp_path / 'student.onnx').write_bytes(b'\x08\x08\x12\x07pytorch')  # an ONNX ModelProto's first fields
    (tmp_path / 'student').write_bytes(b'\x08\x08\x12\x07pytorch')
    return {'model': model, 'root': tmp_path}


CASES = [
    (['--model', '{root}/missing.pt'], 'no model file at'),
    (['--model', '{root}/notes.txt'], 'does not load with torch.load'),
    (['--model', '{root}/student.onnx'], 'is an ONNX export, not a model file; pass the model.pt it was exported from'),
    (['--model', '{root}/student'], 'is an ONNX export'),
    (['--samples', '0'], '--samples 0: evaluate at least one camera set'),
    (['--batch-size', '0'], '--batch-size 0: must be at least 1'),
    (['--latency-runs', '0'], '--latency-runs 0: must be at least 1'),
    (['--out', '{root}/notes.txt/eval'], '--out: {root}/notes.txt/eval cannot be created'),
    (['--out', '/proc/surround_depth_eval'], '--out: cannot write /proc/surround_depth_eval'),
    (['--baseline', '{root}/missing.json'], '--baseline: no file at'),
    (['epochs=3'], "evaluation takes data.* overrides only"),
    (['data.val_samples=0'], 'data.val_samples: 0 is out of range'),
    (['data.val_samples=1e-4x'], 'data.val_samples: expected an integer'),
    (['--split', 'holdout'], '--split holdout: choose val, test or train'),
]


@pytest.mark.parametrize('args, fragment', CASES)
def test_bad_input_ends_in_one_line_with_status_2_and_writes_nothing(inputs, capsys, args, fragment):
    root = inputs['root']
    before = sorted(root.rglob('*'))
    args = [a.format(root=root) for a in args]
    if '--model' not in args:
        args = ['--model', str(inputs['model']), *args]
    assert main(['--device', 'cpu', 'data.image_size=[96,64]', *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert fragment.format(root=root) in err
    assert sorted(root.rglob('*')) == before
