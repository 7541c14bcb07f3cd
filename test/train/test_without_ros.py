"""The training side needs no ROS 2: ``surround_depth_train`` imports neither rclpy, nor a message package, nor
``surround_depth_ros`` (read from the source), and trains and evaluates, on SurroundSim and on a bag, in a process
where every one of them fails to import (as on a GPU cluster without ROS 2)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / 'surround_depth_train'
#: What a machine without ROS 2 lacks: the client library, the message and interface packages, ROS' own Python
#: tools and the ROS side of this package.
ROS_MODULES = ('rclpy', 'rcl_interfaces', 'rosgraph_msgs', 'builtin_interfaces', 'std_msgs', 'sensor_msgs',
               'nav_msgs', 'geometry_msgs', 'diagnostic_msgs', 'tf2_msgs', 'tf2_ros', 'message_filters',
               'ament_index_python', 'launch', 'launch_ros', 'surround_depth_ros')
ROS_PREFIXES = ('rosidl', 'rmw', 'rcl', 'rpyutils')
#: May be tried (``resources.py`` finds an install's share directory with it and falls back without it).
OPTIONAL = ('ament_index_python',)

BLOCKER = f'''"""Test-only sitecustomize: ROS 2 and surround_depth_ros cannot be imported in this interpreter."""
import importlib.abc
import os
import sys

_NAMES = {ROS_MODULES!r}
_PREFIXES = {ROS_PREFIXES!r}


def _ros(name):
    top = name.partition('.')[0]
    return top in _NAMES or top.startswith(_PREFIXES)


class _NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if not _ros(name):
            return None
        with open(os.environ['SURROUND_DEPTH_BLOCKED_LOG'], 'a') as log:
            log.write(name + '\\n')
        raise ModuleNotFoundError(f'No module named {{name!r}} (ROS 2 is not installed here)', name=name)


for _name in [m for m in sys.modules if _ros(m)]:
    del sys.modules[_name]
sys.meta_path.insert(0, _NoRos())
'''

#: Runs ``python -m <module> <args>`` for each step in one interpreter (torch starts once), stopping at a failure.
DRIVER = '''import json, runpy, sys, time
start = time.perf_counter()
for module, args in json.loads(sys.argv[1]):
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name='__main__', alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    if code:
        sys.exit(f'python -m {module} {" ".join(args)} exited with {code}')
    print(f'[driver] {module}: {time.perf_counter() - start:.1f} s', file=sys.stderr, flush=True)
'''


def _imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a file of ``package`` (default: the one it lies in), relative imports
    resolved, lazy ones included."""
    if package is None:
        package = '.'.join(path.relative_to(CORE.parent).with_suffix('').parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit('.', node.level - 1)[0] if node.level else ''
            found.append((node.lineno, '.'.join(p for p in (base, node.module or '') if p)))
    return found


def _is_ros(module: str) -> bool:
    top = module.partition('.')[0]
    return top in ROS_MODULES or top.startswith(ROS_PREFIXES)


def test_no_module_of_the_core_imports_ros_or_the_ros_side_of_the_package():
    files = sorted(CORE.rglob('*.py'))
    assert len(files) > 50 and CORE / 'data' / 'rosbag' / 'dataset.py' in files
    offenders = [f'{f.relative_to(CORE.parent)}:{line} imports {module}'
                 for f in files for line, module in _imports(f)
                 if _is_ros(module) and module.partition('.')[0] not in OPTIONAL]
    assert offenders == []


def test_the_import_scan_sees_lazy_relative_and_aliased_imports(tmp_path):
    source = tmp_path / 'probe.py'
    source.write_text('def f():\n    import rclpy.node as n\n    from sensor_msgs.msg import Image\n'
                      '    from . import reader\n    from ...geometry import rig\n    import surround_depth_ros\n')
    found = _imports(source, 'surround_depth_train.data.rosbag')
    assert found == [(2, 'rclpy.node'), (3, 'sensor_msgs.msg'), (4, 'surround_depth_train.data.rosbag'),
                     (5, 'surround_depth_train.geometry'), (6, 'surround_depth_ros')]
    assert [_is_ros(m) for _, m in found] == [True, True, False, False, True]


@pytest.fixture(scope='module')
def no_ros_site(tmp_path_factory) -> Path:
    """A folder holding the sitecustomize that makes ROS 2 unimportable."""
    site = tmp_path_factory.mktemp('no_ros_site')
    (site / 'sitecustomize.py').write_text(BLOCKER)
    return site


@pytest.fixture
def no_ros(no_ros_site, tmp_path) -> dict:
    """Environment of a process that cannot import ROS 2 (the sitecustomize on PYTHONPATH), and the log of what
    this test's processes tried to import of it."""
    log = tmp_path / 'blocked.log'
    pythonpath = os.pathsep.join(p for p in (str(no_ros_site), os.environ.get('PYTHONPATH', '')) if p)
    env = dict(os.environ, PYTHONPATH=pythonpath, SURROUND_DEPTH_BLOCKED_LOG=str(log), OMP_NUM_THREADS='1')
    return {'env': env, 'log': log}


def test_in_that_process_rclpy_the_message_packages_and_the_ros_side_fail_to_import(no_ros):
    probe = ('import importlib\nfor name in ("rclpy", "sensor_msgs.msg", "builtin_interfaces.msg", "nav_msgs.msg", '
             '"rosidl_runtime_py", "surround_depth_ros", "surround_depth_ros.bag.writer"):\n'
             '    try:\n        importlib.import_module(name)\n        print("imported", name)\n'
             '    except ImportError as exc:\n        print("refused", name, type(exc).__name__)\n')
    result = subprocess.run([sys.executable, '-c', probe], env=no_ros['env'], text=True, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'imported' not in result.stdout and result.stdout.count('refused') == 7, result.stdout


def test_training_and_evaluation_on_surroundsim_and_on_a_bag_run_without_ros(no_ros, tmp_path):
    from surround_depth_ros.bag.surroundsim import SurroundSimDrive
    from surround_depth_ros.convert import main as convert_main

    W, H = 96, 64
    bag = tmp_path / 'drive'  # written here, where the ROS side may run; read only in the process without it
    assert convert_main(['surroundsim', '--frames', '4', '--size', f'{W}x{H}', '--out', str(bag)]) == 0
    masks = SurroundSimDrive(frames=4, image_size=(W, H)).write_masks(tmp_path / 'masks')
    common = ['epochs=1', 'batch_size=2', 'seed=0', 'tensorboard=false', f'data.image_size=[{W},{H}]',
              'model.name=tiny_student_mb', 'teacher.name=depth_anything_tiny_metric',
              'teacher.kwargs={"input_size": [28, 42], "n_bins": 16}', 'loss.ckd=0.1', 'loss.vrkd=1.0',
              'optim.scheduler=constant']
    sim_run, bag_run = tmp_path / 'sim_run', tmp_path / 'bag_run'
    on_bag = ['data.dataset=rosbag', f'data.root={bag}', f'data.mask_files={json.dumps([str(m) for m in masks])}']
    steps = [
        ('surround_depth_train.train', [f'out_dir={sim_run}', *common, 'data.train_samples=4', 'data.val_samples=2',
                                        f'data.cache_dir={tmp_path / "render_cache"}']),
        ('surround_depth_train.train', [f'out_dir={bag_run}', *common, *on_bag]),
        ('surround_depth_train.evaluate', ['--model', str(sim_run / 'model.pt'), '--config',
                                           str(bag_run / 'config.yaml'), '--device', 'cpu', '--pictures', '0',
                                           '--latency-runs', '1', '--no-consistency', '--out', str(tmp_path / 'eval')]),
    ]
    result = subprocess.run([sys.executable, '-c', DRIVER, json.dumps(steps)], env=no_ros['env'], text=True,
                            capture_output=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    print(*[line for line in result.stderr.splitlines() if line.startswith('[driver]')], sep='\n')
    for run in (sim_run, bag_run):
        assert (run / 'model.pt').is_file(), sorted(p.name for p in run.iterdir())
    results = json.loads((tmp_path / 'eval' / 'results.json').read_text())
    assert (results['dataset']['name'], results['dataset']['samples']) == ('rosbag', 4), results['dataset']
    assert results['lidar']['mean']['abs_rel'] > 0
    attempted = no_ros['log'].read_text().split() if no_ros['log'].exists() else []
    assert not [m for m in attempted if m.partition('.')[0] == 'surround_depth_ros'], attempted
