"""Atomic writes: complete files or none, with the permissions an ordinary open() gives."""
import os
import stat

import pytest

from surround_depth_train.atomic import atomic_write


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_the_permissions_open_would_give_not_those_of_a_temp_file(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    with open(tmp_path / 'plain', 'w') as f:
        f.write('x')
    with atomic_write(tmp_path / 'atomic', 'w') as f:
        f.write('x')
    assert mode_of(tmp_path / 'atomic') == mode_of(tmp_path / 'plain') == 0o666 & ~umask
    assert umask & 0o066 == 0o066 or mode_of(tmp_path / 'atomic') != 0o600  # not mkstemp's 0o600


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / 'kept'
    path.write_text('old')
    os.chmod(path, 0o640)
    with atomic_write(path, 'w') as f:
        f.write('new')
    assert path.read_text() == 'new' and mode_of(path) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'file'
    path.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_write(path, 'w') as f:
            f.write('partial')
            raise RuntimeError('crash while writing')
    assert path.read_text() == 'old' and sorted(p.name for p in tmp_path.iterdir()) == ['file']
