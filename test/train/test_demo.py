"""The README's main command, at smoke-test scale: every stage runs and writes its pictures and numbers."""
import re

import pytest

from surround_depth_train.demo import main


@pytest.mark.slow
def test_quick_demo_renders_fuses_and_distills_end_to_end(tmp_path, capsys):
    assert main(['--out', str(tmp_path), '--quick', '--frames', '2']) == 0
    assert sorted(p.name for p in (tmp_path / 'world').glob('sheet_*.png')) == [
        'sheet_seed0_frame000.png', 'sheet_seed0_frame001.png']
    assert (tmp_path / 'cloud_bev.png').is_file() and (tmp_path / 'comparison.png').is_file()
    # the distilled student was trained against the fine-tuned teacher's model file
    assert (tmp_path / 'runs' / 'teacher' / 'model.pt').is_file()
    results = (tmp_path / 'results.md').read_text()
    rows = re.findall(r'^\| (teacher \(fine-tuned\)|student baseline|student \+ CKD \+ VRKD) \|', results, re.M)
    assert len(rows) == 3
    assert '[cloud] fused' in capsys.readouterr().out


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path), '--stages', 'world,train'])
