"""setup.py installs every file a user runs and a console script for every command (``ros2 run surround_depth_ros
<tool>``). The colcon install itself is checked in test_packaging.py; these read setup.py's arguments."""
from __future__ import annotations

import importlib
import runpy
from pathlib import Path

import pytest
import setuptools

REPO = Path(__file__).resolve().parents[1]
SHARE = 'share/surround_depth_ros'


@pytest.fixture(scope='module')
def setup_arguments():
    """The keyword arguments setup.py passes to ``setuptools.setup``, read by running it from the repository."""
    captured = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setattr(setuptools, 'setup', lambda **kwargs: captured.update(kwargs))
        module = runpy.run_path(str(REPO / 'setup.py'))
    captured['CONSOLE_SCRIPTS'] = module['CONSOLE_SCRIPTS']
    return captured


def _installed(setup_arguments) -> dict[str, str]:
    """Installed path (relative to the prefix) -> source path, for every data file."""
    return {f'{dest}/{Path(src).name}': src for dest, files in setup_arguments['data_files'] for src in files}


def test_every_config_file_is_installed_with_the_repository_layout(setup_arguments):
    installed = _installed(setup_arguments)
    configs = sorted(p.relative_to(REPO).as_posix() for p in (REPO / 'config').rglob('*') if p.is_file())
    assert {'config/depth_node.yaml', 'config/surround_depth.rviz', 'config/rigs/surroundsim.yaml',
            'config/surroundsim/suburb.yaml', 'config/experiments/surroundsim.yaml'} <= set(configs)
    assert [c for c in configs if installed.get(f'{SHARE}/{c}') != c] == []


def test_the_launch_file_package_xml_and_the_shipped_students_are_installed(setup_arguments):
    installed = _installed(setup_arguments)
    assert installed[f'{SHARE}/launch/depth.launch.py'] == 'launch/depth.launch.py'
    assert installed[f'{SHARE}/package.xml'] == 'package.xml'
    assert installed['share/ament_index/resource_index/packages/surround_depth_ros'] == 'resource/surround_depth_ros'
    shipped = sorted(p.name for p in (REPO / 'docs' / 'results' / 'surroundsim_models').iterdir())
    for name in shipped:
        assert f'{SHARE}/docs/results/surroundsim_models/{name}' in installed, name


def test_every_console_script_names_a_callable_main(setup_arguments):
    scripts = setup_arguments['entry_points']['console_scripts']
    assert len(scripts) == len(setup_arguments['CONSOLE_SCRIPTS'])
    for name, target in setup_arguments['CONSOLE_SCRIPTS'].items():
        module, _, function = target.partition(':')
        assert callable(getattr(importlib.import_module(module), function)), name


def test_every_command_line_module_has_a_console_script(setup_arguments):
    """A module runnable with ``python -m`` is a user-facing tool; the benchmarks run through ``bench <name>``."""
    targets = {t.partition(':')[0] for t in setup_arguments['CONSOLE_SCRIPTS'].values()}
    commands = []
    for package in ('surround_depth_ros', 'surround_depth_train'):
        for path in sorted((REPO / package).rglob('*.py')):
            module = '.'.join(path.relative_to(REPO).with_suffix('').parts)
            if "if __name__ == '__main__'" in path.read_text() and not module.startswith('surround_depth_train.bench.'):
                commands.append(module)
    for module in commands:
        assert module in targets or f'{module}.__main__' in targets, f'{module} has no console script in setup.py'
    assert {'surround_depth_train.train', 'surround_depth_train.evaluate', 'surround_depth_ros.convert'} <= targets


def test_the_readme_lists_every_console_script(setup_arguments):
    readme = (REPO / 'README.md').read_text()
    section = readme[readme.index('## Install into a ROS 2 workspace'):]
    missing = [name for name in setup_arguments['CONSOLE_SCRIPTS'] if f'`{name}`' not in section]
    assert not missing, f'README, "Install into a ROS 2 workspace", does not list {missing}'
    assert {'train', 'evaluate', 'export', 'convert', 'experiment'} <= set(setup_arguments['CONSOLE_SCRIPTS'])
