"""Bad input to ``evaluate_bag``: one ``error:`` line naming the problem and the fix, exit status 2, nothing written,
before the bag's messages are read."""
import pytest
import torch

from surround_depth_ros.evaluate_bag import main
from surround_depth_train.models import create_model, save_model

CASES = [
    (['{tmp}/empty', '--model', '{model}'], "bag '{tmp}/empty' cannot be opened"),
    (['{tmp}/notes.txt', '--model', '{model}'], "bag '{tmp}/notes.txt' cannot be opened"),
    (['{bag}', '--model', '{tmp}/missing.pt'], '--model: no file at {tmp}/missing.pt'),
    (['{bag}', '--model', '{tmp}/teacher.pt'], 'holds the teacher depth_anything_tiny_metric, tens of times slower '
                                               'than a student; evaluate a distilled student, or pass --allow-teacher'),
    (['{bag}', '--model', '{tmp}/student.onnx'], 'is an ONNX export; add --backend onnxruntime'),
    (['{bag}', '--model', '{model}', '--backend', 'onnxruntime'], 'is not an ONNX export; leave --backend out'),
    (['{bag}', '--model', '{model}', '--mask-files', '{mask}'], 'mask files: 1 given for the 6 cameras'),
    (['{bag}', '--model', '{model}', '--out', '{tmp}/notes.txt/eval'], '--out: {tmp}/notes.txt/eval cannot be created'),
    (['{bag}', '--model', '{model}', '--out', '/proc/surround_depth_eval'], '--out: cannot write'),
    (['{bag}', '--model', '{model}', '--min-depth', '5', '--max-depth', '1'], 'the depth range must satisfy'),
    (['{bag}', '--model', '{model}', '--samples', '0'], '--samples 0: evaluate at least one camera set'),
    (['{bag}', '--model', '{model}', '--baseline', '{tmp}/missing.json'], '--baseline: no file at'),
]


@pytest.fixture
def inputs(sim, tmp_path) -> dict[str, str]:
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'notes.txt').write_text('not a bag')
    (tmp_path / 'student.onnx').write_bytes(b'\x08\x08\x12\x07pytorch')
    torch.manual_seed(0)
    kwargs = {'input_size': [28, 42], 'n_bins': 16}
    save_model(tmp_path / 'teacher.pt', create_model('depth_anything_tiny_metric', **kwargs),
               name='depth_anything_tiny_metric', kwargs=kwargs, input_size=(28, 42))
    return {'tmp': str(tmp_path), 'bag': str(sim['bag']), 'model': str(sim['model']), 'mask': str(sim['masks'][0])}


@pytest.mark.parametrize('args, fragment', CASES)
def test_bad_input_ends_in_one_line_with_status_2_and_writes_nothing(sim, inputs, tmp_path, capsys, args, fragment):
    before = sorted(tmp_path.rglob('*')), sorted(sim['root'].iterdir())
    assert main([a.format(**inputs) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert fragment.format(**inputs) in err
    assert (sorted(tmp_path.rglob('*')), sorted(sim['root'].iterdir())) == before


def test_a_teacher_is_evaluated_with_allow_teacher(sim, inputs, tmp_path):
    out = tmp_path / 'eval'
    assert main([inputs['bag'], '--model', f'{tmp_path}/teacher.pt', '--allow-teacher', '--samples', '1',
                 '--pictures', '0', '--out', str(out)]) == 0
    assert (out / 'results.json').is_file()
