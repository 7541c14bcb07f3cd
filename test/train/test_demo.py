"""The training demo's command line. Its stages run end to end, at smoke-test scale, inside the README's main
command (the whole chain), in test/ros/test_demo.py."""
import pytest

from surround_depth_train.demo import main


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path), '--stages', 'world,train'])
