"""Shared fixtures: tiny real-format datasets (written once per test session; see test/fixtures/datasets.py)."""
import importlib.util
from pathlib import Path

import pytest

_FIXTURES = Path(__file__).resolve().parent / 'fixtures'


def load_fixture_module(name: str):
    """A module of test/fixtures by file name (the tests run with --import-mode=importlib, so not by package)."""
    spec = importlib.util.spec_from_file_location(f'surround_depth_test_fixtures_{name}', _FIXTURES / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def dataset_fixtures():
    """The fixture writers (``write_nuscenes``, ``write_ddad``) for tests that need a private, breakable copy."""
    return load_fixture_module('datasets')


@pytest.fixture(scope='session')
def nuscenes_root(tmp_path_factory, dataset_fixtures) -> Path:
    """A tiny nuScenes v1.0-mini dataroot (read-only: tests that break files write their own copy)."""
    return dataset_fixtures.write_nuscenes(tmp_path_factory.mktemp('nuscenes'))


@pytest.fixture(scope='session')
def ddad_root(tmp_path_factory, dataset_fixtures) -> Path:
    """A tiny DDAD tree in the DGP layout, with SurroundDepth's masks and preprocessed depth beside it."""
    return dataset_fixtures.write_ddad(tmp_path_factory.mktemp('ddad'))


@pytest.fixture
def tiny_shipped_pair(tmp_path):
    """A :class:`~surround_depth_train.shipped.ShippedPair` of two tiny students in ``tmp_path / 'make'``."""
    return load_fixture_module('shipped').write_tiny_shipped_pair(tmp_path / 'make')
