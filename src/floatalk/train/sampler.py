"""Deterministic, resumable, distributed-aware data order, and per-item random seeds.

The data order of epoch ``e`` depends only on ``(seed, e)``: one global permutation of the dataset
(identity when not shuffling), truncated to a multiple of the world size. Rank ``r`` of ``W`` reads
global positions ``r, r + W, r + 2W, ...``, so a step of ``B`` samples per rank consumes the next
``B * W`` global positions whatever ``W`` is. The data position saved in a checkpoint is
``(epoch, index)``, with ``index`` the number of global positions already consumed in that epoch;
:meth:`ResumableSampler.set_epoch` restarts exactly there.

Randomness *inside* ``dataset[i]`` (augmentation, picking a frame pair, ...) is made resumable and
independent of the number of DataLoader workers by :class:`SeededItems`: the trainer asks the sampler
for ``(index, item_seed)`` pairs, and the wrapper seeds Python's ``random``, NumPy's global RNG and
torch's CPU RNG from ``item_seed = derive_seed(seed, "item", epoch, index)`` just for that call. A
dataset may therefore use those global RNGs freely (in the main process their previous states are
restored afterwards, so the training step's randomness is not disturbed).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

__all__ = ["ResumableSampler", "SeededItems", "derive_seed"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a fixed function of `parts` (stable across runs, machines, versions)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class ResumableSampler(Sampler):
    """Indices (or ``(index, item_seed)`` pairs) for this rank, from a given position in an epoch.

    Args:
        num_samples: ``len(dataset)``.
        seed: the run's seed; the order of epoch ``e`` is a function of ``(seed, e)`` only.
        shuffle: permute each epoch; otherwise ``0, 1, 2, ...``.
        rank, world_size: this process among all (defaults: a single process).
        with_seeds: yield ``(index, item_seed)`` for :class:`SeededItems` instead of plain indices.

    Example::

        sampler = ResumableSampler(len(ds), seed=0, rank=1, world_size=2)
        sampler.set_epoch(3, start=64)   # resume: 64 global samples of epoch 3 were already used
        loader = DataLoader(ds, batch_size=16, sampler=sampler, drop_last=True)
    """

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        with_seeds: bool = False,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world size {world_size}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.with_seeds = with_seeds
        self.epoch = 0
        self.start = 0

    @property
    def usable(self) -> int:
        """Global positions per epoch: the dataset size rounded down to a multiple of the world size."""
        return self.num_samples - self.num_samples % self.world_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and the number of global positions already consumed in it."""
        if start % self.world_size or not 0 <= start <= self.usable:
            raise ValueError(
                f"start {start} must be a multiple of the world size {self.world_size} in [0, {self.usable}]"
            )
        self.epoch, self.start = int(epoch), int(start)

    def global_order(self, epoch: int) -> list[int]:
        """The order of all dataset indices in `epoch` (before the split over ranks)."""
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
        return torch.randperm(self.num_samples, generator=g).tolist()

    def item_seed(self, epoch: int, index: int) -> int:
        """The seed of dataset item `index` in `epoch` (see :class:`SeededItems`)."""
        return derive_seed(self.seed, "item", epoch, index)

    def __iter__(self) -> Iterator[Any]:
        order = self.global_order(self.epoch)[: self.usable]
        for index in order[self.start + self.rank :: self.world_size]:
            yield (index, self.item_seed(self.epoch, index)) if self.with_seeds else index

    def __len__(self) -> int:
        return (self.usable - self.start) // self.world_size


class SeededItems(Dataset):
    """Wrap `dataset` so that item ``(index, seed)`` is computed under RNGs seeded with ``seed``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        in_worker = get_worker_info() is not None
        if not in_worker:  # the main process: leave its RNG streams exactly as they were
            saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            random.seed(seed)
            np.random.seed(seed % (1 << 32))
            torch.default_generator.manual_seed(seed)  # CPU only: CUDA RNG states stay untouched
            return self.dataset[index]
        finally:
            if not in_worker:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])
