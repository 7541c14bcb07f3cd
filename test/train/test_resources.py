"""Package files are found in the source checkout the code runs from, or in the share directory it was installed
with; the install layouts are built for real in tmp_path (a copy of the package in a prefix) and run in a
subprocess, so the module sees its own location as an installed module does."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from surround_depth_train import resources

REPO = Path(__file__).resolve().parents[2]

_PROBE = ('import json; from surround_depth_train import resources as r; '
          'print(json.dumps({"source": str(r.source_root()), "share": str(r.share_directory()), '
          '"rig": str(r.resource_path("config/rigs/surroundsim.yaml")), '
          '"user": str(r.resolve_path("config/rigs/surroundsim.yaml"))}))')


def _install(prefix: Path) -> Path:
    """A copy of surround_depth_train in ``prefix``'s site-packages and a share directory beside it, as colcon lays
    them out; returns site-packages."""
    site = prefix / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}' / 'site-packages'
    shutil.copytree(REPO / 'surround_depth_train', site / 'surround_depth_train',
                    ignore=shutil.ignore_patterns('__pycache__'))
    share = prefix / 'share' / 'surround_depth_ros'
    (share / 'config' / 'rigs').mkdir(parents=True)
    shutil.copy(REPO / 'package.xml', share / 'package.xml')
    shutil.copy(REPO / 'config' / 'rigs' / 'surroundsim.yaml', share / 'config' / 'rigs' / 'surroundsim.yaml')
    return site


def _probe(site: Path, cwd: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ('AMENT_PREFIX_PATH', 'PYTHONPATH')}
    environ.update(PYTHONPATH=str(site), **env)
    result = subprocess.run([sys.executable, '-c', _PROBE], cwd=cwd, env=environ, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_code_in_the_checkout_finds_the_checkouts_files():
    assert resources.source_root() == REPO
    assert resources.roots()[0] == REPO
    assert resources.resource_path('config/depth_node.yaml') == REPO / 'config' / 'depth_node.yaml'


def test_installed_code_finds_the_share_directory_from_the_install_layout(tmp_path):
    site = _install(tmp_path / 'install')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    found = _probe(site, elsewhere)
    share = tmp_path / 'install' / 'share' / 'surround_depth_ros'
    assert found['source'] == 'None' and found['share'] == str(share)
    assert found['rig'] == found['user'] == str(share / 'config' / 'rigs' / 'surroundsim.yaml')


def test_installed_code_prefers_the_ament_index_when_it_lists_the_package(tmp_path):
    site = _install(tmp_path / 'install')
    indexed = tmp_path / 'indexed'  # another prefix, registered in the ament index
    (indexed / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (indexed / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'surround_depth_ros').write_text('')
    share = indexed / 'share' / 'surround_depth_ros'
    (share / 'config' / 'rigs').mkdir(parents=True)
    shutil.copy(REPO / 'package.xml', share / 'package.xml')
    shutil.copy(REPO / 'config' / 'rigs' / 'surroundsim.yaml', share / 'config' / 'rigs' / 'surroundsim.yaml')
    found = _probe(site, tmp_path, AMENT_PREFIX_PATH=str(indexed))
    assert found['share'] == str(share)
    assert found['rig'] == str(share / 'config' / 'rigs' / 'surroundsim.yaml')


def test_a_path_under_the_working_directory_wins_over_the_package_file(tmp_path, monkeypatch):
    (tmp_path / 'config' / 'rigs').mkdir(parents=True)
    (tmp_path / 'config' / 'rigs' / 'surroundsim.yaml').write_text('cameras: []\n')
    monkeypatch.chdir(tmp_path)
    assert resources.resolve_path('config/rigs/surroundsim.yaml') == Path('config/rigs/surroundsim.yaml')
    assert resources.resolve_path('no/such.yaml') == Path('no/such.yaml')  # missing anywhere: left as given
