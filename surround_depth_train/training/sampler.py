"""Sharded, resumable sampling: the same global batches whatever the number of processes, and an exact restart.

Epoch ``e`` draws one permutation of the dataset from ``(seed, e)``. It is cut into global batches of
``batch_size * world_size`` camera sets; process ``r`` takes the ``r``-th slice of each global batch, so the
processes see disjoint shards and a single process with ``batch_size * world_size`` sees the very same global
batches. Each item carries its own augmentation seed, a function of ``(seed, epoch, position)`` only, so data
loader workers, restarts and sharding never change what a sample looks like. ``start_batch`` skips the batches
already trained in an interrupted epoch.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ['ShardedResumableSampler', 'AugmentedView', 'augmentation_seed']



def augmentation_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed that depends only on the run seed, the epoch and the position in the epoch's order."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0]) & 0x7FFFFFFFFFFFFFFF


class ShardedResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(dataset index, augmentation seed)`` for this process's shard; drops the last partial batch."""

    def __init__(self, size: int, batch_size: int, world_size: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0):
        if size < batch_size * world_size:
            raise ValueError(f'the dataset has {size} samples, fewer than one global batch of '
                             f'{batch_size} x {world_size} processes; add samples or lower data.batch_size')
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.shuffle, self.seed = shuffle, seed
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            first = b * global_batch + self.rank * self.batch_size
            for pos in range(first, first + self.batch_size):
                yield order[pos], augmentation_seed(self.seed, self.epoch, pos)


class AugmentedView(Dataset):
    """A dataset indexed by ``(index, augmentation seed)``; ``augment(sample, seed)`` draws from that seed only.

    The dataset index is recorded as ``meta['index']`` (the teacher cache is keyed by it).
    """

    def __init__(self, dataset: Dataset, augment: Callable[[dict, int], dict] | None = None):
        self.dataset = dataset
        self.augment = augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        sample = self.dataset[index]
        if isinstance(sample.get('meta'), dict):
            sample = dict(sample, meta=dict(sample['meta'], index=int(index)))
        if self.augment is not None:
            sample = self.augment(sample, seed)
        return sample
