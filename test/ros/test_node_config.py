"""The node's parameters: one dataclass, the params file, the launch file and setup.py agree."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from surround_depth_ros.node_config import RUNTIME_PARAMETERS, NodeConfig, NodeConfigError

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / 'config' / 'depth_node.yaml'
LAUNCH = REPO / 'launch' / 'depth.launch.py'


def _params_file():
    return yaml.safe_load(PARAMS.read_text())['/**']['ros__parameters']


def _launch_module():
    spec = importlib.util.spec_from_file_location('depth_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports no launch module at the top: runs without launch_ros
    return module


def test_params_file_sets_only_declared_parameters_and_they_validate():
    values = _params_file()
    assert set(values) <= set(NodeConfig.names())
    NodeConfig.from_mapping(values)


def test_params_file_mentions_every_parameter_including_the_commented_lists():
    text = PARAMS.read_text()
    for name in NodeConfig.names():
        assert re.search(rf'^\s+(# )?{name}:', text, re.M), f'{name} is not in {PARAMS.name}'


def test_runtime_parameters_are_parameters():
    assert set(RUNTIME_PARAMETERS) <= set(NodeConfig.names())


@pytest.mark.parametrize('values, match', [
    ({'backend': 'tensorrt'}, 'backend'),
    ({'publish': ['depth', 'points']}, 'unknown output'),
    ({'qos_cloud': 'sometimes'}, 'qos_cloud'),
    ({'min_depth': 5.0, 'max_depth': 2.0}, 'min_depth'),
    ({'confidence_threshold': 1.5}, 'confidence_threshold'),
    ({'cameras': ['a', 'b'], 'image_topics': ['/a']}, 'image_topics: 1 entries for 2 cameras'),
    ({'slop': 'fast'}, 'slop: expected float'),
    ({'bins_downsample': 3}, 'bins_downsample: 3 is not 1, 2 or 4'),
    ({'no_such_thing': 1}, 'unknown parameter'),
])
def test_bad_parameters_are_refused_with_the_parameter_named(values, match):
    with pytest.raises(NodeConfigError, match=match):
        NodeConfig.from_mapping(values)


def test_integers_are_accepted_for_float_parameters():
    assert NodeConfig.from_mapping({'slop': 1}).slop == 1.0


def test_launch_file_compiles_and_passes_only_declared_parameters():
    ast.parse(LAUNCH.read_text())
    module = _launch_module()
    params_file, overrides = module.node_parameters('/x/depth_node.yaml', model_file='m.pt', rig_file='r.yaml',
                                                    use_sim_time='true')
    assert params_file == '/x/depth_node.yaml'
    assert overrides == {'use_sim_time': True, 'model_file': 'm.pt', 'rig_file': 'r.yaml'}
    assert set(overrides) - {'use_sim_time'} <= set(NodeConfig.names())
    assert module.node_parameters('p.yaml')[1] == {'use_sim_time': False}


def test_everything_the_launch_file_names_exists_and_is_installed():
    module = _launch_module()
    setup = (REPO / 'setup.py').read_text()
    assert f"'{module.EXECUTABLE}': 'surround_depth_ros.node:run'" in setup
    assert (REPO / 'config' / module.PARAMS_FILE).is_file()
    assert (REPO / 'config' / module.RVIZ_CONFIG).is_file()
    # setup.py installs launch/ and config/ into share/surround_depth_ros (test/test_setup.py checks every file)
    assert "_files('launch/*.py')" in setup and "_tree('config')" in setup
    assert module.ENVIRONMENT['FASTDDS_BUILTIN_TRANSPORTS'] == 'LARGE_DATA'


def test_rviz_config_shows_six_depth_images_and_the_cloud_in_base_link():
    rviz = yaml.safe_load((REPO / 'config' / 'surround_depth.rviz').read_text())
    manager = rviz['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == 'base_link'
    displays = manager['Displays']
    images = [d['Topic']['Value'] for d in displays if d['Class'] == 'rviz_default_plugins/Image']
    clouds = [d for d in displays if d['Class'] == 'rviz_default_plugins/PointCloud2']
    rig = yaml.safe_load((REPO / 'config' / 'rigs' / 'surroundsim.yaml').read_text())
    assert images == [f'/{c["name"]}/depth/image' for c in rig['cameras']]
    assert clouds[0]['Topic']['Value'] == NodeConfig().cloud_topic and clouds[0]['Channel Name'] == 'camera'
    assert clouds[0]['Topic']['Reliability Policy'] == 'Reliable'


def test_training_cameras_map_each_renamed_camera_to_the_training_camera_it_plays():
    config = NodeConfig.from_mapping({'cameras': ['CAM_FRONT', 'CAM_BACK'],
                                      'training_cameras': ['CAM_FRONT:front', ' CAM_BACK : back ']})
    assert config.training_camera_map() == {'CAM_FRONT': 'front', 'CAM_BACK': 'back'}
    assert NodeConfig().training_camera_map() == {}
    # the node checks against the rig's cameras when the cameras parameter is left empty
    assert NodeConfig(training_cameras=['CAM_FRONT:front']).training_camera_map(['CAM_FRONT']) == {'CAM_FRONT': 'front'}
    with pytest.raises(NodeConfigError, match=r"training_cameras: \['CAM_LEFT'\] are not among the cameras"):
        NodeConfig(training_cameras=['CAM_LEFT:front_left']).training_camera_map(['CAM_FRONT'])


@pytest.mark.parametrize('entries, match', [
    (['CAM_FRONT'], "'CAM_FRONT' is not CAMERA:TRAINING_CAMERA"),
    (['CAM_FRONT:'], "'CAM_FRONT:' is not CAMERA:TRAINING_CAMERA"),
    ([':front'], "':front' is not CAMERA:TRAINING_CAMERA"),
    (['CAM_FRONT:front:left'], 'is not CAMERA:TRAINING_CAMERA'),
    (['CAM_FRONT:front', 'CAM_FRONT:back'], "camera 'CAM_FRONT' is mapped twice"),
    (['CAM_SIDE:front'], r"\['CAM_SIDE'\] are not among the cameras \['CAM_FRONT'\]"),
])
def test_a_malformed_training_cameras_entry_is_refused_naming_it_and_the_form(entries, match):
    with pytest.raises(NodeConfigError, match=match):
        NodeConfig.from_mapping({'cameras': ['CAM_FRONT'], 'training_cameras': entries})
