"""ament_python setup for surround_depth_ros (installs both surround_depth_ros and surround_depth_train)."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'surround_depth_ros'


def _files(pattern: str) -> list[str]:
    return sorted(glob(pattern))


def _tree(folder: str) -> list[tuple[str, list[str]]]:
    """``data_files`` entries that install ``folder`` with its layout into the share directory."""
    entries = []
    for directory, _, names in sorted(os.walk(folder)):
        files = sorted(os.path.join(directory, n) for n in names if not n.startswith('.'))
        if files:
            entries.append((os.path.join(SHARE, directory), files))
    return entries


SHARE = 'share/' + PACKAGE
#: The shipped students of the experiment (surround_depth_train.shipped), read by the demo.
SHIPPED_MODELS = 'docs/results/surroundsim_models'

#: ``ros2 run surround_depth_ros <tool>``: every user-facing command (also ``python -m <module>``).
CONSOLE_SCRIPTS = {
    # the online side
    'surround_depth_node': 'surround_depth_ros.node:run',
    'surround_depth_demo': 'surround_depth_ros.demo:main',
    'surround_depth_replay': 'surround_depth_ros.replay:main',
    'surround_depth_evaluate_bag': 'surround_depth_ros.evaluate_bag:main',
    'surround_depth_evaluate_live': 'surround_depth_ros.evaluate_live:main',
    'surround_depth_rig_from_bag': 'surround_depth_ros.rig_from_bag:main',
    'convert': 'surround_depth_ros.convert:main',
    'bench_node': 'surround_depth_ros.bench:main',
    # training, evaluation, deployment
    'train': 'surround_depth_train.train:main',
    'evaluate': 'surround_depth_train.evaluate:main',
    'agreement': 'surround_depth_train.evaluation.agreement:main',
    'export': 'surround_depth_train.export.__main__:main',
    'experiment': 'surround_depth_train.experiment:main',
    'surroundsim': 'surround_depth_train.data.surroundsim.__main__:main',
    'train_demo': 'surround_depth_train.demo:main',
    'bench': 'surround_depth_train.bench.__main__:main',
}


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=['surround_depth_ros', 'surround_depth_ros.*',
                                    'surround_depth_train', 'surround_depth_train.*']),
    package_data={'surround_depth_train': ['**/*.yaml', '**/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        (SHARE, ['package.xml']),
        (SHARE + '/launch', _files('launch/*.py')),
        *_tree('config'),          # the node's params, the RViz file, rigs, train, experiments, surroundsim worlds
        *_tree(SHIPPED_MODELS),
    ],
    python_requires='>=3.10',  # Humble's; test/test_python_versions.py checks the code against it
    install_requires=['setuptools', 'numpy', 'pyyaml'],
    extras_require={'test': ['pytest', 'pytest-timeout']},
    zip_safe=True,
    maintainer='surround-depth maintainers',
    maintainer_email='maintainers@surround-depth.dev',
    description='Six-camera metric depth: distilled student, training pipeline and ROS 2 node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [f'{name} = {target}' for name, target in CONSOLE_SCRIPTS.items()],
    },
)
