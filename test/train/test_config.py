from dataclasses import dataclass, field

import pytest

from surround_depth_train.config import ConfigError, apply_overrides, load_config, save_config


@dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Run:
    name: str = 'x'
    epochs: int = 5
    optim: Optim = field(default_factory=Optim)
    cameras: list[str] = field(default_factory=list)


def test_yaml_and_overrides_fill_a_nested_dataclass(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('name: demo\noptim:\n  lr: 0.001\n')
    cfg = load_config(Run, path, ['epochs=2', 'optim.betas=[0.8, 0.9]', 'cameras=[a, b]'])
    assert cfg == Run('demo', 2, Optim(1e-3, (0.8, 0.9)), ['a', 'b'])


def test_unknown_key_is_refused_listing_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) 'optim.lrr'.*valid keys are: betas, lr"):
        load_config(Run, None, ['optim.lrr=1'])


def test_wrong_type_names_the_dotted_key():
    with pytest.raises(ConfigError, match='epochs: expected an integer'):
        load_config(Run, None, ['epochs=two'])


def test_override_without_equals_sign_is_refused():
    with pytest.raises(ConfigError, match='key=value'):
        apply_overrides({}, ['epochs'])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match='does not exist'):
        load_config(Run, tmp_path / 'missing.yaml')


def test_saved_config_loads_back_identically(tmp_path):
    cfg = Run('a', 3, Optim(0.5, (0.1, 0.2)), ['x'])
    save_config(cfg, tmp_path / 'resolved.yaml')
    assert load_config(Run, tmp_path / 'resolved.yaml') == cfg
    assert not [p for p in tmp_path.iterdir() if p.suffix == '.tmp']


def test_numbers_with_an_exponent_and_no_dot_are_floats_in_yaml_and_overrides(tmp_path):
    """PyYAML alone reads ``1e-3`` as a string (YAML 1.1); users write learning rates that way."""
    path = tmp_path / 'c.yaml'
    path.write_text('optim:\n  lr: 1e-3\n  betas: [9E-1, 1e0]\n')
    assert load_config(Run, path).optim == Optim(1e-3, (0.9, 1.0))
    assert load_config(Run, path, ['optim.lr=1e-4']).optim.lr == 1e-4
    assert load_config(Run, None, ['name=1e-4x']).name == '1e-4x'
