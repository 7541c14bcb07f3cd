"""The model registry: names, lazy built-ins, clear errors."""
from __future__ import annotations

import pytest
from torch import nn

from surround_depth_train.models import create_model, list_models, register_model
from surround_depth_train.models.registry import is_registered

STUDENTS = ['monodepth2', 'monodepth2_mb', 'hrdepth', 'hrdepth_mb', 'monovit', 'monovit_mb', 'timm_student',
            'timm_student_mb', 'tiny_student', 'tiny_student_mb']


def test_every_student_name_is_registered():
    assert set(STUDENTS) <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match='unknown model .*monodepth2_mb'):
        create_model('monodepth3')


def test_unknown_keyword_names_what_the_factory_takes():
    with pytest.raises(ValueError, match="does not take \\['depth_max'\\].*max_depth"):
        create_model('tiny_student', depth_max=10.0)


def test_a_new_factory_can_be_registered_and_created():
    @register_model('test_registry_identity')
    def factory(width: int = 3) -> nn.Module:
        return nn.Linear(width, width)

    assert is_registered('test_registry_identity')
    assert create_model('test_registry_identity', width=4).in_features == 4


def test_registering_another_factory_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match='already registered'):
        @register_model('monodepth2')
        def other() -> nn.Module:
            return nn.Identity()
