import pytest

from surround_depth_train.training.sampler import AugmentedView, ShardedResumableSampler


def test_two_shards_are_disjoint_and_together_form_the_single_process_global_batches():
    single = list(ShardedResumableSampler(20, batch_size=4, world_size=1, seed=3))
    r0 = list(ShardedResumableSampler(20, batch_size=2, world_size=2, rank=0, seed=3))
    r1 = list(ShardedResumableSampler(20, batch_size=2, world_size=2, rank=1, seed=3))
    assert not {i for i, _ in r0} & {i for i, _ in r1}
    for b in range(5):
        assert r0[2 * b:2 * b + 2] + r1[2 * b:2 * b + 2] == single[4 * b:4 * b + 4]


def test_epochs_reshuffle_and_the_same_epoch_repeats_exactly():
    s = ShardedResumableSampler(16, batch_size=4, seed=1)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0 and [i for i, _ in e1] != [i for i, _ in e0]
    assert sorted(i for i, _ in e0) == list(range(16))


def test_resuming_at_a_batch_yields_the_rest_of_the_epoch():
    s = ShardedResumableSampler(12, batch_size=3, seed=0)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=2)
    assert list(s) == full[6:] and len(s) == 6


def test_augmentation_seeds_differ_per_item_and_epoch():
    s = ShardedResumableSampler(8, batch_size=2, seed=0)
    seeds0 = [a for _, a in s]
    s.set_epoch(1)
    seeds1 = [a for _, a in s]
    assert len(set(seeds0)) == 8 and not set(seeds0) & set(seeds1)


def test_too_small_dataset_is_refused_with_the_fix():
    with pytest.raises(ValueError, match='lower data.batch_size'):
        ShardedResumableSampler(3, batch_size=2, world_size=2)


def test_augmented_view_hands_the_item_seed_to_the_augmentation():
    view = AugmentedView([{'x': 1}, {'x': 2}], lambda s, seed: dict(s, r=seed % 1000))
    a, b = view[(1, 42)], view[(1, 42)]
    assert a == b and a['x'] == 2 and view[(1, 43)]['r'] != a['r']
