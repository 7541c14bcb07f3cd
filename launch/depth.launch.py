"""Launch surround_depth_node (and optionally RViz): ``ros2 launch surround_depth_ros depth.launch.py``.

Arguments: ``params_file`` (default: the installed ``config/depth_node.yaml``, keyed ``/**`` so it applies under
any namespace), ``model_file`` and ``rig_file`` (override the params file when not empty), ``namespace``,
``use_sim_time`` (true under ``ros2 bag play --clock``), ``rviz`` (true starts RViz with ``config/surround_depth.rviz``).

Everything is decided before any process starts (:func:`plan`): with ``rviz:=true`` on a machine without rviz2 the
node starts alone, with a warning, instead of failing after the node is up. When the node ends (a bad parameter
stops it at start with one ``error:`` line) the launch shuts down, so no process is left behind.

The launch modules are imported inside :func:`generate_launch_description`, so the pure parts of this file
(:func:`plan`, :func:`node_parameters`, :data:`ENVIRONMENT`) can be checked where launch_ros is not installed.
"""
import os

PACKAGE = 'surround_depth_ros'
EXECUTABLE = 'surround_depth_node'
RVIZ_CONFIG = 'surround_depth.rviz'
PARAMS_FILE = 'depth_node.yaml'
ARGUMENTS = {  # name -> (default, description); the params_file default is filled in with the share directory
    'params_file': ('', 'ROS parameters file of surround_depth_node (default: the installed config/' + PARAMS_FILE
                    + ')'),
    'model_file': ('', 'model file (overrides params_file)'),
    'rig_file': ('', 'rig YAML (overrides params_file)'),
    'namespace': ('', 'namespace of the node'),
    'use_sim_time': ('false', 'use /clock (bag replay)'),
    'rviz': ('false', 'start RViz with ' + RVIZ_CONFIG + ' (skipped with a warning where rviz2 is not installed)'),
}

# Fast DDS' default transport loses large best-effort images; LARGE_DATA carries them (REFERENCE section 7).
# glibc hands large freed blocks back to the system, so every forward pass page-faults its activations in again;
# these keep them (the node re-executes itself with them when they are missing: surround_depth_ros.allocator).
ENVIRONMENT = {
    'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA',
    'MALLOC_MMAP_THRESHOLD_': '4000000000',
    'MALLOC_TRIM_THRESHOLD_': '4000000000',
}


def _true(text: str) -> bool:
    return text.strip().lower() in ('true', '1', 'yes')


def node_parameters(params_file: str, model_file: str = '', rig_file: str = '', use_sim_time: str = 'false') -> list:
    """The node's ``parameters``: the params file, then the overrides given on the command line."""
    overrides = {'use_sim_time': _true(use_sim_time)}
    if model_file:
        overrides['model_file'] = model_file
    if rig_file:
        overrides['rig_file'] = rig_file
    return [params_file, overrides]


def rviz_installed() -> bool:
    """Whether launch_ros can start rviz2: its package is in the ament index."""
    try:
        from ament_index_python.packages import get_package_prefix
        get_package_prefix('rviz2')
    except (ImportError, LookupError, ValueError, OSError):  # PackageNotFoundError is a KeyError; OSError: no index
        return False
    return True


def plan(values: dict, share: str, rviz_found: bool) -> tuple:
    """What the launch starts for these argument values, before anything starts: ``(processes, warnings)``, each
    process a dict of ``launch_ros.actions.Node`` keyword arguments; the depth node comes first."""
    values = {name: values.get(name, default) for name, (default, _) in ARGUMENTS.items()}
    params_file = values['params_file'] or os.path.join(share, 'config', PARAMS_FILE)
    params = node_parameters(params_file, values['model_file'], values['rig_file'], values['use_sim_time'])
    processes = [dict(package=PACKAGE, executable=EXECUTABLE, name=EXECUTABLE, namespace=values['namespace'],
                      parameters=params)]
    warnings = []
    if _true(values['rviz']):
        if rviz_found:
            # outside the namespace: the RViz file names the outputs' topics as the node publishes them unnamespaced
            processes.append(dict(package='rviz2', executable='rviz2', name='rviz2',
                                  arguments=['-d', os.path.join(share, 'config', RVIZ_CONFIG)],
                                  parameters=[{'use_sim_time': params[1]['use_sim_time']}]))
        else:
            warnings.append('rviz:=true but rviz2 is not installed (no rviz2 package in the ament index): starting '
                            'the node without RViz; install ros-$ROS_DISTRO-rviz2 to see its outputs')
    return processes, warnings


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    share = get_package_share_directory(PACKAGE)
    args = [DeclareLaunchArgument(name, default_value=default, description=description)
            for name, (default, description) in ARGUMENTS.items()]

    def actions(context):
        values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
        processes, warnings = plan(values, share, rviz_installed() if _true(values['rviz']) else False)
        node, *others = processes
        return ([LogInfo(msg='warning: ' + w) for w in warnings]
                + [Node(**node, output='screen', on_exit=Shutdown(reason=EXECUTABLE + ' ended'))]
                + [Node(**p, output='screen') for p in others])

    env = [SetEnvironmentVariable(name, value) for name, value in ENVIRONMENT.items()]
    return LaunchDescription([*args, *env, OpaqueFunction(function=actions)])
