"""package.xml and requirements-workspace.txt declare exactly what the installed code imports at run time.

A ROS 2 user sets a workspace up with ``rosdep install --from-paths src`` (package.xml) plus one pip command
(requirements-workspace.txt). The imports of both packages and of the launch file are read with ``ast`` (every
import statement, also the lazy ones inside functions), so a new import without its declaration, or a declaration
nothing uses any more, fails here.
"""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = ('surround_depth_ros', 'surround_depth_train', 'launch')

#: Python module -> rosdep key, where the two names differ (ROS packages' modules carry the package's name).
ROSDEP_KEYS = {
    'cv2': 'python3-opencv',
    'matplotlib': 'python3-matplotlib',
    'numpy': 'python3-numpy',
    'torch': 'python3-torch',
    'tqdm': 'python3-tqdm',
    'yaml': 'python3-yaml',
}
#: Python module -> pip distribution, for the packages rosdep has no system key for (requirements-workspace.txt).
PIP_DISTRIBUTIONS = {
    'nuscenes': 'nuscenes-devkit',
    'onnx': 'onnx',
    'onnxruntime': 'onnxruntime',
    'rosbags': 'rosbags',
    'tensorboard': 'tensorboard',
    'timm': 'timm',
}
#: Imports that need a package of another name on top of their own.
ALSO_NEEDS = {'torch.utils.tensorboard': 'tensorboard'}
#: Run-time dependencies used without an import statement: key -> the text in the code that uses it.
USED_WITHOUT_IMPORT = {
    'rviz2': "package='rviz2'",             # the launch file starts it (rviz:=true)
    'tf2_msgs': 'tf2_msgs/msg/TFMessage',   # the bags' /tf_static: replay loads its message class by name
}


def code_imports() -> dict[str, set[str]]:
    """Every absolute import of the installed code: dotted module name -> the files that import it."""
    found: dict[str, set[str]] = {}
    for root in CODE:
        for path in sorted((REPO / root).rglob('*.py')):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def third_party(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level modules that are neither the standard library nor this repository's packages."""
    out: dict[str, set[str]] = {}
    for name, files in imports.items():
        top = name.partition('.')[0]
        if top in sys.stdlib_module_names or top.startswith('surround_depth_'):
            continue
        out.setdefault(top, set()).update(files)
    return out


def exec_depends() -> list[str]:
    return [e.text.strip() for e in ET.parse(REPO / 'package.xml').getroot().iter('exec_depend')]


def requirement_names(path: Path) -> list[str]:
    """Distribution names of a pip requirements file (normalised: lower case, ``_`` -> ``-``)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line and not line.startswith('-'):
            names.append(re.split(r'[<>=!~;\[ ]', line, maxsplit=1)[0].lower().replace('_', '-'))
    return names


def needed_declarations() -> dict[str, set[str]]:
    """rosdep key or pip distribution -> the files whose imports need it."""
    imports = code_imports()
    needed: dict[str, set[str]] = {}
    for top, files in third_party(imports).items():
        key = ROSDEP_KEYS.get(top) or PIP_DISTRIBUTIONS.get(top) or top
        needed.setdefault(key, set()).update(files)
    for name, key in ALSO_NEEDS.items():
        if name in imports:
            needed.setdefault(key, set()).update(imports[name])
    return needed


def test_every_import_of_the_code_is_declared_in_package_xml_or_the_workspace_requirements():
    declared = set(exec_depends()) | set(requirement_names(REPO / 'requirements-workspace.txt'))
    missing = {key: sorted(files) for key, files in needed_declarations().items() if key not in declared}
    assert not missing, (f'imported but not declared: {missing}; add the rosdep key to package.xml (a mapping to '
                         f'ROSDEP_KEYS here when the module is named otherwise) or the pip name to '
                         f'requirements-workspace.txt (and PIP_DISTRIBUTIONS)')


def test_package_xml_declares_nothing_that_the_code_does_not_use():
    needed = needed_declarations()
    unused = [key for key in exec_depends() if key not in needed and key not in USED_WITHOUT_IMPORT]
    assert not unused, f'package.xml declares {unused}, which no code imports; remove them'


def test_dependencies_used_without_an_import_are_still_used_by_the_code():
    code = '\n'.join(p.read_text() for root in CODE for p in (REPO / root).rglob('*.py'))
    for key, text in USED_WITHOUT_IMPORT.items():
        assert text in code, f'{key}: no code uses it any more ({text!r}); remove it from package.xml and the table'
        assert key in exec_depends(), key


def test_the_workspace_requirements_hold_only_what_rosdep_cannot_install_and_nothing_unused():
    names = requirement_names(REPO / 'requirements-workspace.txt')
    assert sorted(names) == sorted(set(PIP_DISTRIBUTIONS.values())), names
    needed = needed_declarations()
    assert [n for n in names if n not in needed] == []
    assert not set(names) & set(exec_depends()), 'a package is declared twice (package.xml and pip)'


def test_the_development_environment_installs_every_workspace_requirement():
    """``scripts/setup.sh`` installs requirements.txt: the suite then runs what a workspace user installs."""
    pinned = set(requirement_names(REPO / 'requirements.txt'))
    assert set(requirement_names(REPO / 'requirements-workspace.txt')) <= pinned


def test_the_scan_sees_lazy_imports_inside_functions_and_the_launch_file():
    imports = code_imports()
    assert 'launch/depth.launch.py' in imports['launch_ros.actions']   # imported inside generate_launch_description
    assert 'surround_depth_ros/node.py' in imports['tf2_ros']           # imported only with extrinsics_from_tf
    assert 'nuscenes' in third_party(imports)


def test_package_xml_is_format_3_and_ament_python():
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'surround_depth_ros'
    assert root.find('export').findtext('build_type') == 'ament_python'
    assert len(exec_depends()) == len(set(exec_depends())), 'a dependency is declared twice'
