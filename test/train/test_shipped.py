"""The shipped students: the manifest is read back and checked, a damaged folder is named, and the pair the
repository ships (docs/results/surroundsim_models) reproduces the test metrics recorded when it was shipped."""
from __future__ import annotations

import json

import pytest
import torch

from surround_depth_train.shipped import DEFAULT_SHIPPED_DIR, ShippingError, read_shipped


def test_a_folder_without_a_manifest_ships_nothing(tmp_path):
    assert read_shipped(tmp_path) is None
    (tmp_path / 'baseline.pt').write_bytes(b'x')  # a half-written folder: no models.json, nothing shipped
    assert read_shipped(tmp_path) is None


def test_the_manifest_is_read_back_with_the_recorded_metrics(tiny_shipped_pair):
    again = read_shipped(tiny_shipped_pair.folder)
    assert again == tiny_shipped_pair
    assert again.baseline.model == 'tiny_student' and again.distilled.model == 'tiny_student_mb'
    assert set(again.baseline.test_metrics) >= {'abs_rel', 'rmse', 'a1'}
    assert 'tiny_student_mb' in (again.folder / 'README.md').read_text()


@pytest.mark.parametrize('damage, match', [
    (lambda f: (f / 'models.json').write_text('{'), 'not valid JSON'),
    (lambda f: (f / 'models.json').write_text(json.dumps({'format': 'x'})), 'not a shipped-models manifest'),
    (lambda f: (f / 'baseline.pt').unlink(), 'baseline.pt is missing or differs'),
])
def test_a_damaged_folder_is_refused_by_name(tiny_shipped_pair, damage, match):
    damage(tiny_shipped_pair.folder)
    with pytest.raises(ShippingError, match=match):
        read_shipped(tiny_shipped_pair.folder)


@pytest.mark.slow
def test_the_repository_s_shipped_pair_reproduces_its_recorded_test_metrics(tmp_path):
    """What `make demo` deploys: two float16 files that load as float32 and give the numbers of the experiment."""
    from surround_depth_train.evaluate import run_evaluation

    pair = read_shipped()
    if pair is None:
        pytest.skip(f'nothing is shipped in {DEFAULT_SHIPPED_DIR} (the experiment ships only when the paper\'s '
                    f'direction holds)')
    total = sum(m.path.stat().st_size for m in (pair.baseline, pair.distilled))
    assert total <= pair.manifest['experiment_config']['ship']['max_total_mb'] * 1e6
    ev = pair.manifest['evaluation']
    for m in (pair.baseline, pair.distilled):
        weights = torch.load(m.path, weights_only=True)['state_dict']
        assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
        result = run_evaluation(m.path, config=pair.folder / f'{m.role}.yaml', overrides=list(ev['overrides']),
                                split=ev['split'], out_dir=tmp_path / m.role, pictures=0, latency_runs=1,
                                consistency=False, progress=False)
        assert result['dataset']['samples'] == ev['samples']
        for key, recorded in m.test_metrics.items():
            assert result['lidar']['mean'][key] == pytest.approx(recorded, rel=0.01, abs=1e-3), (m.role, key)
