"""Launch surround_depth_node (and optionally RViz): ``ros2 launch surround_depth_ros depth.launch.py``.

Arguments: ``params_file`` (default: the installed ``config/depth_node.yaml``), ``model_file`` and ``rig_file``
(override the params file when not empty), ``namespace``, ``use_sim_time`` (true under ``ros2 bag play --clock``),
``rviz`` (true starts RViz with ``config/surround_depth.rviz``).

The launch modules are imported inside :func:`generate_launch_description`, so the pure parts of this file
(:func:`node_parameters`, :data:`ENVIRONMENT`) can be checked where launch_ros is not installed.
"""
import os

PACKAGE = 'surround_depth_ros'
EXECUTABLE = 'surround_depth_node'
RVIZ_CONFIG = 'surround_depth.rviz'
PARAMS_FILE = 'depth_node.yaml'

# Fast DDS' default transport loses large best-effort images; LARGE_DATA carries them (REFERENCE section 7).
# glibc hands large freed blocks back to the system, so every forward pass page-faults its activations in again;
# these keep them (the node re-executes itself with them when they are missing: surround_depth_ros.allocator).
ENVIRONMENT = {
    'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA',
    'MALLOC_MMAP_THRESHOLD_': '4000000000',
    'MALLOC_TRIM_THRESHOLD_': '4000000000',
}


def node_parameters(params_file: str, model_file: str = '', rig_file: str = '', use_sim_time: str = 'false') -> list:
    """The node's ``parameters``: the params file, then the overrides given on the command line."""
    overrides = {'use_sim_time': use_sim_time.strip().lower() in ('true', '1', 'yes')}
    if model_file:
        overrides['model_file'] = model_file
    if rig_file:
        overrides['rig_file'] = rig_file
    return [params_file, overrides]


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument('params_file', default_value=os.path.join(share, 'config', PARAMS_FILE),
                              description='ROS parameters file of surround_depth_node'),
        DeclareLaunchArgument('model_file', default_value='', description='model file (overrides params_file)'),
        DeclareLaunchArgument('rig_file', default_value='', description='rig YAML (overrides params_file)'),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of the node'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='use /clock (bag replay)'),
        DeclareLaunchArgument('rviz', default_value='false', description='start RViz with ' + RVIZ_CONFIG),
    ]

    def nodes(context):
        value = {name: LaunchConfiguration(name).perform(context)
                 for name in ('params_file', 'model_file', 'rig_file', 'use_sim_time')}
        params = node_parameters(**value)
        return [
            Node(package=PACKAGE, executable=EXECUTABLE, name=EXECUTABLE,
                 namespace=LaunchConfiguration('namespace'), output='screen', parameters=params),
            Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                 arguments=['-d', os.path.join(share, 'config', RVIZ_CONFIG)],
                 parameters=[{'use_sim_time': params[1]['use_sim_time']}],
                 condition=IfCondition(LaunchConfiguration('rviz'))),
        ]

    env = [SetEnvironmentVariable(name, value) for name, value in ENVIRONMENT.items()]
    return LaunchDescription([*args, *env, OpaqueFunction(function=nodes)])
