"""ament_python setup for surround_depth_ros (installs both surround_depth_ros and surround_depth_train)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'surround_depth_ros'


def _files(pattern: str) -> list[str]:
    return sorted(glob(pattern))


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=['surround_depth_ros', 'surround_depth_ros.*',
                                    'surround_depth_train', 'surround_depth_train.*']),
    package_data={'surround_depth_train': ['**/*.yaml', '**/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', _files('launch/*.py')),
        ('share/' + PACKAGE + '/config', _files('config/*.yaml') + _files('config/*.rviz')),
        ('share/' + PACKAGE + '/config/rigs', _files('config/rigs/*.yaml')),
        ('share/' + PACKAGE + '/config/train', _files('config/train/*.yaml')),
    ],
    install_requires=['setuptools', 'numpy', 'pyyaml'],
    extras_require={'test': ['pytest', 'pytest-timeout']},
    zip_safe=True,
    maintainer='surround-depth maintainers',
    maintainer_email='maintainers@surround-depth.dev',
    description='Six-camera metric depth: distilled student, training pipeline and ROS 2 node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'surround_depth_demo = surround_depth_ros.demo:main',
            'surround_depth_node = surround_depth_ros.node:main',
            'surround_depth_replay = surround_depth_ros.replay:main',
            'surround_depth_evaluate_bag = surround_depth_ros.evaluate_bag:main',
            'surround_depth_evaluate_live = surround_depth_ros.evaluate_live:main',
            'surround_depth_rig_from_bag = surround_depth_ros.rig_from_bag:main',
        ],
    },
)
