"""launch/depth.launch.py: what it starts for every combination of its arguments, decided before anything starts,
and the node started with the command line launch_ros builds from that (launch and launch_ros have no wheel here,
so :func:`launch_ros_command` builds it as ``launch_ros.actions.Node`` does)."""
from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from surround_depth_ros.node_config import NodeConfig

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / 'launch' / 'depth.launch.py'
SHARE = '/opt/ros/x/share/surround_depth_ros'
# The parameter client here and the node must share the transport that carries large images (as the launch file
# sets it); `make test` exports it, and this keeps the test right when run on its own.
os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')


@pytest.fixture(scope='module')
def launch_file():
    spec = importlib.util.spec_from_file_location('depth_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports no launch module at the top: runs without launch_ros
    return module


COMBINATIONS = [dict(zip(('params_file', 'model_file', 'rig_file', 'namespace', 'use_sim_time', 'rviz'), values))
                for values in itertools.product(('', '/my/params.yaml'), ('', 'm.pt'), ('', 'rig.yaml'),
                                                ('', 'ns', '/car/front'), ('false', 'true'), ('false', 'true'))]


@pytest.mark.parametrize('rviz_found', [True, False])
def test_every_argument_combination_starts_the_node_first_and_rviz_only_where_it_can(launch_file, rviz_found):
    for values in COMBINATIONS:
        processes, warnings = launch_file.plan(values, SHARE, rviz_found)
        node, *others = processes
        assert (node['package'], node['executable'], node['name']) == ('surround_depth_ros', 'surround_depth_node',
                                                                       'surround_depth_node')
        assert node['namespace'] == values['namespace']
        params_file, overrides = node['parameters']
        assert params_file == (values['params_file'] or f'{SHARE}/config/depth_node.yaml')
        assert overrides['use_sim_time'] is (values['use_sim_time'] == 'true')
        assert overrides.get('model_file', '') == values['model_file']
        assert overrides.get('rig_file', '') == values['rig_file']
        wants_rviz = values['rviz'] == 'true'
        assert [p['executable'] for p in others] == (['rviz2'] if wants_rviz and rviz_found else [])
        assert len(warnings) == (1 if wants_rviz and not rviz_found else 0)
        if others:
            assert others[0]['arguments'] == ['-d', f'{SHARE}/config/surround_depth.rviz']
            assert others[0]['parameters'] == [{'use_sim_time': overrides['use_sim_time']}]


def test_a_missing_rviz2_is_a_warning_that_says_what_to_install(launch_file):
    _, warnings = launch_file.plan({'rviz': 'true'}, SHARE, rviz_found=False)
    assert 'rviz2 is not installed' in warnings[0] and 'starting the node without RViz' in warnings[0]


def test_rviz2_is_looked_up_in_the_ament_index(launch_file, tmp_path, monkeypatch):
    index = tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    assert launch_file.rviz_installed() is False
    (index / 'rviz2').write_text('')
    assert launch_file.rviz_installed() is True
    monkeypatch.delenv('AMENT_PREFIX_PATH')
    assert launch_file.rviz_installed() is False  # no ament index at all


def test_the_launch_file_names_only_parameters_the_node_declares(launch_file):
    declared = set(NodeConfig.names()) | {'use_sim_time'}
    for values in COMBINATIONS:
        _, overrides = launch_file.plan(values, SHARE, True)[0][0]['parameters']
        assert set(overrides) <= declared


def test_the_params_file_applies_under_any_node_name_and_namespace():
    data = yaml.safe_load((REPO / 'config' / 'depth_node.yaml').read_text())
    assert list(data) == ['/**'] and set(data['/**']) == {'ros__parameters'}


def test_generate_launch_description_declares_every_argument_of_the_plan(launch_file):
    source = LAUNCH.read_text()
    assert 'for name, (default, description) in ARGUMENTS.items()' in source
    assert "on_exit=Shutdown(" in source  # the node's end ends the launch: nothing stays behind
    assert set(launch_file.ARGUMENTS) == {'params_file', 'model_file', 'rig_file', 'namespace', 'use_sim_time',
                                          'rviz'}


def launch_ros_command(executable: list[str], process: dict, folder: Path) -> list[str]:
    """The command line ``launch_ros.actions.Node`` runs for ``process`` (launch_ros/actions/node.py): ``--ros-args
    -r __node:=NAME [-r __ns:=/NS]``, then per parameters entry ``--params-file``: a file as given, a dict written
    to a temporary file keyed by the node's full name (``/NS/NAME``)."""
    cmd = [*executable, '--ros-args', '-r', f'__node:={process["name"]}']
    namespace = process['namespace']
    full_ns = '/' + namespace.strip('/') if namespace else ''
    if full_ns:
        cmd += ['-r', f'__ns:={full_ns}']
    for i, params in enumerate(process['parameters']):
        if isinstance(params, dict):
            path = folder / f'launch_params_{i}.yaml'
            path.write_text(yaml.dump({f'{full_ns}/{process["name"]}': {'ros__parameters': params}}))
            params = str(path)
        cmd += ['--params-file', params]
    return cmd


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    torch = pytest.importorskip('torch')
    from surround_depth_train.models import create_model, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('launch') / 'tiny.pt'
    save_model(path, create_model('tiny_student_mb', max_depth=80.0), name='tiny_student_mb',
               kwargs={'max_depth': 80.0}, input_size=(64, 96))
    return path


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_started_as_the_launch_file_starts_it_in_a_namespace_takes_its_params_file(launch_file,
                                                                                            model_file, tmp_path):
    """``namespace:=ns`` with the shipped params file: the node starts (rig_file comes from the file) and every
    declared parameter has a value that ``get_parameters`` returns, also the lists left empty."""
    rclpy = pytest.importorskip('rclpy')
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import GetParameters
    from rclpy.executors import SingleThreadedExecutor

    domain = 100 + os.getpid() % 50
    processes, _ = launch_file.plan({'namespace': 'ns', 'model_file': str(model_file),
                                     'params_file': str(REPO / 'config' / 'depth_node.yaml')}, SHARE, False)
    cmd = launch_ros_command([sys.executable, '-m', 'surround_depth_ros.node'], processes[0], tmp_path)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA', OMP_NUM_THREADS='1')
    log = tmp_path / 'node.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    client_node = rclpy.create_node('launch_test', context=context)
    names = NodeConfig.names() + ['use_sim_time']
    try:
        deadline = time.monotonic() + 120
        while 'allocator:' not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and 'allocator:' in log.read_text(), log.read_text()
        client = client_node.create_client(GetParameters, '/ns/surround_depth_node/get_parameters')
        assert client.wait_for_service(timeout_sec=30), 'no /ns/surround_depth_node/get_parameters service'
        future = client.call_async(GetParameters.Request(names=names))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(client_node)
        executor.spin_until_future_complete(future, timeout_sec=30)
        executor.shutdown()
        values = dict(zip(names, future.result().values))
        unset = [n for n, v in values.items() if v.type == ParameterType.PARAMETER_NOT_SET]
        assert unset == [], f'get_parameters returns no value for {unset}'
        assert values['rig_file'].string_value == 'config/rigs/surroundsim.yaml'  # from the /** params file
        assert values['model_file'].string_value == str(model_file)              # the launch file's override
        assert values['use_sim_time'].bool_value is False
        assert values['cameras'].type == ParameterType.PARAMETER_STRING_ARRAY and not values['cameras'].string_array_value
        assert values['input_size'].type == ParameterType.PARAMETER_INTEGER_ARRAY
        assert values['publish'].string_array_value == ['depth', 'depth_info', 'cloud']
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        client_node.destroy_node()
        rclpy.shutdown(context=context)
