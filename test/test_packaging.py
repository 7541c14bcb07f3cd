"""The package builds, installs and tests as a ROS 2 ament_python package with colcon, and what it installs runs
from the install space alone: from a folder outside the source tree, with the environment of a shell that sourced
the workspace's ``setup.bash``, every Python process is watched (test/fixtures/source_tree_guard) and any file of
the source tree that one of them opens, lists, imports or starts fails the test."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)  # the virtual environment lives in the checkout here; what it holds is not the source tree
GUARD = REPO / 'test' / 'fixtures' / 'source_tree_guard' / 'sitecustomize.py'
SHARE = Path('share') / 'surround_depth_ros'
DOMAIN = str(200 + (os.getpid() + 15) % 30)  # the demo test's range (200..229): the two never run at once
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


# ------------------------------------------------------------------------------------------------------------------
# The install space alone, from outside the source tree


@pytest.fixture(scope='module')
def sourced_env(workspace, tmp_path_factory) -> dict:
    """The environment of a shell that sourced ``install/setup.bash``, a copy of the guard leading PYTHONPATH."""
    setup = workspace / 'install' / 'setup.bash'
    result = subprocess.run(['bash', '-c', f'source "{setup}" && env -0'], capture_output=True, timeout=60,
                            env=dict(os.environ, PATH=f'{VENV / "bin"}{os.pathsep}{os.environ.get("PATH", "")}'))
    assert result.returncode == 0, result.stderr
    env = dict(item.split('=', 1) for item in result.stdout.decode().split('\0') if '=' in item)
    guard = tmp_path_factory.mktemp('guard')
    shutil.copy(GUARD, guard / 'sitecustomize.py')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(guard), env.get('PYTHONPATH', '')) if p)
    env.update(SURROUND_DEPTH_GUARD_WATCH=f'source={REPO}{os.pathsep}install={workspace / "install"}',
               SURROUND_DEPTH_GUARD_ALLOW=str(VENV), FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA', ROS_DOMAIN_ID=DOMAIN,
               PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    assert str(workspace / 'install' / 'surround_depth_ros') in env['AMENT_PREFIX_PATH']
    return env


def _outside(tmp_path: Path, env: dict) -> tuple[Path, dict, Path]:
    """A working folder outside the source tree, the environment with a guard log of its own, the log."""
    cwd = tmp_path / 'elsewhere'
    cwd.mkdir()
    log = tmp_path / 'guard.log'
    assert not str(cwd).startswith(str(REPO))
    return cwd, dict(env, SURROUND_DEPTH_GUARD_LOG=str(log)), log


def _uses(log: Path, label: str) -> list[str]:
    lines = log.read_text().splitlines() if log.is_file() else []
    return [line for line in lines if line.split(' ', 2)[1] == label]


def _tool(workspace: Path, name: str) -> str:
    return str(workspace / 'install' / 'surround_depth_ros' / 'lib' / 'surround_depth_ros' / name)


def _run_group(cmd: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a process group of its own, all of which is killed on timeout (the demo starts
    processes of its own, which would otherwise outlive it)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f'{cmd[0]} ran longer than {timeout:g} s; its output:\n{out[-3000:]}\n{err[-3000:]}')
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _source_paths_in(text: str) -> list[str]:
    """Paths into the source tree named in ``text`` (the virtual environment's excepted)."""
    return [m for m in re.findall(re.escape(str(REPO)) + r'[^\s\'"]*', text) if not m.startswith(str(VENV))]


def test_the_install_space_holds_every_config_the_launch_file_and_the_shipped_students(workspace):
    share = workspace / 'install' / 'surround_depth_ros' / SHARE
    wanted = [p for folder in ('config', 'launch', 'docs/results/surroundsim_models')
              for p in (REPO / folder).rglob('*') if p.is_file() and '__pycache__' not in p.parts]
    assert len(wanted) > 20
    for path in wanted:
        installed = share / path.relative_to(REPO)
        assert installed.is_file() and installed.read_bytes() == path.read_bytes(), installed


def test_every_console_script_is_installed_where_ros2_run_looks(workspace):
    import runpy

    import setuptools

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setattr(setuptools, 'setup', lambda **kwargs: None)
        scripts = runpy.run_path(str(REPO / 'setup.py'))['CONSOLE_SCRIPTS']
    for name in scripts:
        assert os.access(_tool(workspace, name), os.X_OK), name


def test_the_guard_records_a_process_that_imports_from_the_source_tree(sourced_env, tmp_path):
    """The check below can fail: a process importing the checkout's package is seen."""
    cwd, env, log = _outside(tmp_path, sourced_env)
    env['PYTHONPATH'] = env['PYTHONPATH'].split(os.pathsep)[0] + os.pathsep + str(REPO)
    subprocess.run([sys.executable, '-c', 'import surround_depth_train.resources'], cwd=cwd, env=env, check=True,
                   timeout=60)
    assert any('surround_depth_train/resources.py' in line for line in _uses(log, 'source')), _uses(log, 'source')


def test_installed_tools_find_the_installed_configs_and_shipped_students_from_any_folder(workspace, sourced_env,
                                                                                         tmp_path):
    cwd, env, log = _outside(tmp_path, sourced_env)
    probe = ('import json; from surround_depth_ros.demo import SHIPPED_DIR; '
             'from surround_depth_train.resources import resource_path; '
             'from surround_depth_train.shipped import read_shipped; '
             'from surround_depth_train.config import load_config; '
             'from surround_depth_train.training.config import TrainConfig; '
             'pair = read_shipped(resource_path(SHIPPED_DIR)); '
             'load_config(TrainConfig, "config/train/surroundsim_student_baseline.yaml"); '
             'print(json.dumps([str(pair.folder), str(pair.distilled.path)]))')
    result = subprocess.run([sys.executable, '-c', probe], cwd=cwd, env=env, text=True, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    share = workspace / 'install' / 'surround_depth_ros' / SHARE
    folder, distilled = json.loads(result.stdout)
    assert Path(folder) == share / 'docs' / 'results' / 'surroundsim_models' and Path(distilled).is_file()
    assert _uses(log, 'source') == []
    assert any(str(share / 'config' / 'train' / 'surroundsim_student_baseline.yaml') in line
               for line in _uses(log, 'install'))
    help_text = subprocess.run([_tool(workspace, 'train'), '--help'], cwd=cwd, env=env, text=True,
                               capture_output=True, timeout=120)
    assert help_text.returncode == 0 and '--config' in help_text.stdout, help_text.stderr


@pytest.mark.slow
@pytest.mark.ros
def test_the_installed_demo_runs_outside_the_source_tree_and_uses_none_of_it(workspace, sourced_env, tmp_path):
    cwd, env, log = _outside(tmp_path, sourced_env)
    result = _run_group([_tool(workspace, 'surround_depth_demo'), '--out', 'demo', '--quick'], cwd=cwd, env=env,
                        timeout=480)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    demo = cwd / 'demo'
    assert (demo / 'report.md').is_file() and json.loads((demo / 'live' / 'results.json').read_text())['frames']
    assert _uses(log, 'source') == [], _uses(log, 'source')[:20]
    installed = _uses(log, 'install')
    site = '/site-packages/surround_depth_ros/'
    # the node, the live evaluator and the replay were processes of their own, each running the installed code
    assert len({line.split()[0] for line in installed if site in line}) >= 4, installed[:5]
    texts = [result.stdout, result.stderr] + [p.read_text(errors='replace') for p in demo.rglob('*')
                                              if p.is_file() and p.suffix in ('.md', '.json', '.log', '.yaml')]
    assert [p for text in texts for p in _source_paths_in(text)] == []


@pytest.mark.slow
@pytest.mark.ros
def test_the_installed_node_runs_the_installed_shipped_student_with_the_installed_params_file(workspace,
                                                                                           sourced_env, tmp_path):
    rclpy = pytest.importorskip('rclpy')
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from surround_depth_train.data.rosbag import topics
    from surround_depth_ros.messages import camera_messages
    from surround_depth_train.geometry.rig import CameraRig

    import numpy as np

    cwd, env, log = _outside(tmp_path, sourced_env)
    share = workspace / 'install' / 'surround_depth_ros' / SHARE
    model = 'docs/results/surroundsim_models/distilled.pt'  # a package path: found in the share directory
    node_log = tmp_path / 'node.log'
    with open(node_log, 'w') as out:
        proc = subprocess.Popen([_tool(workspace, 'surround_depth_node'), '--ros-args', '--params-file',
                                 str(share / 'config' / 'depth_node.yaml'), '-p', f'model_file:={model}'],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    rig = CameraRig.from_yaml(share / 'config' / 'rigs' / 'surroundsim.yaml')
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(DOMAIN))
    client = rclpy.create_node('surround_depth_install_test', context=context)
    got = []
    client.create_subscription(Image, topics.depth_topic(rig.names[0]), got.append,
                               QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    pubs = {c: (client.create_publisher(Image, topics.image_topic(c), qos_profile_sensor_data),
                client.create_publisher(CameraInfo, topics.camera_info_topic(c), qos_profile_sensor_data))
            for c in rig.names}
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client)
    rng = np.random.default_rng(0)
    try:
        deadline = time.monotonic() + 180
        while not got and time.monotonic() < deadline and proc.poll() is None:
            stamp = time.time_ns()
            for cam in rig.resized(160, 96):
                image, info = camera_messages(rng.integers(0, 256, (96, 160, 3), np.uint8), cam.K, stamp,
                                              f'{cam.name}_optical_frame')
                pubs[cam.name][1].publish(info)
                pubs[cam.name][0].publish(image)
            executor.spin_once(timeout_sec=0.5)
            end = time.monotonic() + 1.0
            while not got and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
        assert got, f'no depth image came; the node\'s output:\n{node_log.read_text()[-3000:]}'
        assert got[0].encoding == '32FC1' and (got[0].height, got[0].width) == (96, 160)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, node_log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.shutdown()
        client.destroy_node()
        rclpy.shutdown(context=context)
    assert _uses(log, 'source') == [], _uses(log, 'source')[:20]
    opened = [line.split(' ', 3)[3] for line in _uses(log, 'install')]
    assert str(share / model) in opened and str(share / 'config' / 'rigs' / 'surroundsim.yaml') in opened
    assert _source_paths_in(node_log.read_text()) == []
