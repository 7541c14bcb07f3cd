import pytest
import torch

from surround_depth_train.data.schema import SampleError, collate_surround, validate_sample
from surround_depth_train.data.surroundsim import SurroundSimDataset


@pytest.fixture(scope='module')
def samples():
    ds = SurroundSimDataset('val', num_samples=2, image_size=(64, 40))
    return [ds[0], ds[1]]


def test_surroundsim_sample_follows_the_schema(samples):
    s = samples[0]
    validate_sample(s, image_size=(64, 40))
    assert s['image'].dtype == torch.float32 and 0.0 <= s['image'].min() and s['image'].max() <= 1.0
    assert s['depth_mask'].any()
    assert not (s['depth_mask'] & ~s['self_mask']).any()
    d = s['depth'][s['depth_mask']]
    assert d.min() >= 0.5 and d.max() <= 80.0
    assert s['meta']['camera_names'] == ['front', 'front_left', 'back_left', 'back', 'back_right', 'front_right']


def test_validate_sample_names_a_missing_key(samples):
    bad = dict(samples[0])
    del bad['K']
    with pytest.raises(SampleError, match=r"missing key\(s\) \['K'\]"):
        validate_sample(bad)


def test_validate_sample_rejects_a_rig_of_five_cameras(samples):
    bad = {k: (v[:5] if k in ('image', 'K', 'T_base_cam') else v) for k, v in samples[0].items()}
    with pytest.raises(SampleError, match='expected 6 cameras'):
        validate_sample(bad)


def test_validate_sample_rejects_a_depth_of_the_wrong_shape(samples):
    bad = dict(samples[0])
    bad['depth'] = bad['depth'][:, :, :-1]
    with pytest.raises(SampleError, match="'depth': expected shape"):
        validate_sample(bad)


def test_validate_sample_rejects_a_float_mask(samples):
    bad = dict(samples[0])
    bad['depth_mask'] = bad['depth_mask'].float()
    with pytest.raises(SampleError, match='expected dtype torch.bool'):
        validate_sample(bad)


def test_collate_pads_lidar_and_counts_the_points(samples):
    batch = collate_surround(samples)
    counts = [s['lidar'].shape[0] for s in samples]
    assert batch['image'].shape == (2, 6, 3, 40, 64)
    assert batch['lidar'].shape == (2, max(counts), 4)
    assert batch['lidar_count'].tolist() == counts
    short = counts.index(min(counts))
    assert torch.equal(batch['lidar'][short, :counts[short]], samples[short]['lidar'])
    assert batch['meta']['frame'] == [s['meta']['frame'] for s in samples]


def test_collate_drops_an_optional_key_that_some_samples_lack(samples):
    second = dict(samples[1])
    del second['depth_dense']
    batch = collate_surround([samples[0], second])
    assert 'depth_dense' not in batch
    assert 'dynamic_mask' in batch
