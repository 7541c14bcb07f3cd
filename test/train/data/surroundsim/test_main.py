import cv2

from surround_depth_train.bench.render import main as bench_main
from surround_depth_train.data.surroundsim.__main__ import main
from surround_depth_train.geometry.rig import CameraRig


def test_sheet_command_writes_contact_sheets_and_the_rig(tmp_path, capsys):
    assert main(['sheet', '--out', str(tmp_path), '--frames', '2', '--size', '96x56', '--seed', '4']) == 0
    sheets = sorted(tmp_path.glob('sheet_*.png'))
    assert [p.name for p in sheets] == ['sheet_seed4_frame000.png', 'sheet_seed4_frame001.png']
    image = cv2.imread(str(sheets[0]))
    assert image.shape[0] > 3 * 56 and image.shape[1] > 6 * 96
    rig = CameraRig.from_yaml(tmp_path / 'surroundsim_rig.yaml')
    assert rig.names[0] == 'front' and rig[0].width == 96


def test_benchmark_prints_the_rendering_rate_and_stage_times(capsys):
    assert bench_main(['--size', '64x40', '--samples', '1']) == 0
    out = capsys.readouterr().out
    assert 'samples/s:' in out and 'cameras' in out and 'lidar' in out
