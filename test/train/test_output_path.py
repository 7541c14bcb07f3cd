"""Output locations are checked before the work, without leaving anything behind."""
from pathlib import Path

import pytest

from surround_depth_train.config import ConfigError
from surround_depth_train.output_path import check_output_dir, check_output_file


def test_a_folder_that_can_be_created_passes_and_is_not_created(tmp_path):
    assert check_output_dir(tmp_path / 'a' / 'b', '--out') == tmp_path / 'a' / 'b'
    assert check_output_file(tmp_path / 'a' / 'c.json', '--out') == tmp_path / 'a' / 'c.json'
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('check, path, fragment', [
    (check_output_dir, '{tmp}/f.txt', '--out: {tmp}/f.txt is a file, not a folder; pass a folder path'),
    (check_output_dir, '{tmp}/f.txt/run', '--out: {tmp}/f.txt/run cannot be created: {tmp}/f.txt is a file'),
    (check_output_dir, '/proc/surround_depth/run', '--out: cannot write /proc/surround_depth/run (/proc is not'),
    (check_output_file, '{tmp}', '--out: {tmp} is a folder; pass a file path'),
    (check_output_file, '{tmp}/f.txt/x.json', '--out: {tmp}/f.txt/x.json cannot be created: {tmp}/f.txt is a file'),
    (check_output_file, '/proc/x.json', '--out: cannot write /proc/x.json'),
])
def test_impossible_and_read_only_locations_are_refused_naming_the_option(tmp_path, check, path, fragment):
    (tmp_path / 'f.txt').write_text('x')
    with pytest.raises(ConfigError) as exc:
        check(Path(path.format(tmp=tmp_path)), '--out')
    assert fragment.format(tmp=tmp_path) in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f.txt']
