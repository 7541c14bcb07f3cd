"""Both packages (and the launch file) run on the Python of every supported ROS 2 release: 3.10 (Humble) to 3.12
(Jazzy, Kilted). No 3.10 interpreter installs here, so vermin checks the code statically: every module, member,
syntax feature and (evaluated) annotation against the minimum version that has it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# --exclude long: vermin reads torch.long as Python 2's `long`
VERMIN_ARGS = ['--target=3.10-', '--no-tips', '--violations', '--eval-annotations', '--exclude', 'long']


def _vermin(*paths: Path) -> subprocess.CompletedProcess:
    exe = shutil.which('vermin', path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail('vermin is not installed; run `make test` (scripts/setup.sh installs requirements.txt)')
    return subprocess.run([exe, *VERMIN_ARGS, *map(str, paths)], text=True, capture_output=True, timeout=300)


def test_both_packages_and_the_launch_file_need_no_python_newer_than_3_10():
    result = _vermin(REPO / 'surround_depth_ros', REPO / 'surround_depth_train', REPO / 'launch')
    assert result.returncode == 0 and 'Target versions not met' not in result.stdout, result.stdout + result.stderr


def test_the_check_fails_on_code_that_needs_python_3_11(tmp_path):
    (tmp_path / 'newer.py').write_text('import tomllib\nfrom typing import Self\n')
    result = _vermin(tmp_path / 'newer.py')
    assert result.returncode != 0 and "'tomllib' module requires !2, 3.11" in result.stdout, result.stdout


def test_setup_py_states_the_oldest_python():
    assert "python_requires='>=3.10'" in (REPO / 'setup.py').read_text()
