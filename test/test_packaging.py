"""The package builds, installs and tests as a ROS 2 ament_python package with colcon."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.colcon


def _colcon(*args, cwd):
    exe = shutil.which('colcon', path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', ''))
    if exe is None:
        pytest.fail('colcon is not installed; run `make test` (it installs colcon-common-extensions)')
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get('PATH', ''))
    return subprocess.run([exe, '--log-base', str(cwd / 'log'), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=600)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp('colcon_ws')
    result = _colcon('build', '--base-paths', str(REPO), '--build-base', str(ws / 'build'),
                     '--install-base', str(ws / 'install'), cwd=ws)
    assert result.returncode == 0, result.stdout + result.stderr
    return ws


def test_colcon_lists_the_package_as_ament_python(tmp_path):
    result = _colcon('list', '--base-paths', str(REPO), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r'^surround_depth_ros\s+\S+\s+\(ros\.ament_python\)$', result.stdout, re.M), result.stdout


def test_install_space_holds_the_ament_index_marker_and_package_xml(workspace):
    share = workspace / 'install' / 'surround_depth_ros' / 'share'
    assert (share / 'ament_index' / 'resource_index' / 'packages' / 'surround_depth_ros').is_file()
    assert (share / 'surround_depth_ros' / 'package.xml').is_file()


def test_installed_console_script_runs_from_the_install_space(workspace):
    install = workspace / 'install' / 'surround_depth_ros'
    script = install / 'lib' / 'surround_depth_ros' / 'surround_depth_demo'
    assert script.is_file()
    site = next((install / 'lib').glob('python3*/site-packages'))
    env = dict(os.environ, PYTHONPATH=str(site) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, str(script), '--help'], env=env, text=True, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'usage: surround_depth_demo' in result.stdout
    # the module it ran was imported from the install space, not from the source tree
    assert f'from {site / "surround_depth_train"}' in result.stdout.replace('\n', ''), result.stdout


def test_colcon_test_runs_the_fast_subset(workspace):
    result = _colcon('test', '--base-paths', str(REPO), '--build-base', str(workspace / 'build'),
                     '--install-base', str(workspace / 'install'),
                     '--pytest-args', '-m', 'not slow and not ros and not colcon', 'test/train/geometry',
                     'test/train/test_metrics.py', cwd=workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _colcon('test-result', '--test-result-base', str(workspace / 'build'), '--all', cwd=workspace)
    match = re.search(r'Summary: (\d+) tests, (\d+) errors, (\d+) failures, (\d+) skipped', summary.stdout)
    assert match, summary.stdout
    tests, errors, failures, _ = map(int, match.groups())
    assert tests >= 5 and errors == 0 and failures == 0, summary.stdout
