"""The training sampler and per-sample seeding that make an epoch replayable.

:class:`ResumableDistributedSampler` is :class:`torch.utils.data.DistributedSampler` (a permutation
seeded by ``seed + epoch``, padded to a multiple of the number of processes, process ``r`` taking
every ``world``-th index from position ``r``) that can start part-way through an epoch. Its position
is counted in samples of the whole epoch consumed by all processes together, so a checkpoint's
position does not depend on how many processes wrote it.

:class:`SeededSamples` draws each sample's augmentation (flip, jitter, multi-scale, mosaic tiles,
affine) from a seed of its own, ``(train.seed, epoch, index)``. A sample is then augmented the same
way whichever process, DataLoader worker or position in the epoch loads it: one process with batch
``2B`` sees exactly the images of two processes with batch ``B``, and a run resumed in the middle of
an epoch continues with exactly the samples an uninterrupted run would have drawn.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["ResumableDistributedSampler", "SeededSamples", "sample_seed"]


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler(shuffle=True, drop_last=False)`` with a start position inside the epoch.

    Works without an initialised process group (pass ``num_replicas`` and ``rank``; one process is
    ``num_replicas=1, rank=0``).
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.consumed = 0

    def set_epoch(self, epoch: int, consumed: int = 0) -> None:
        """Shuffle for ``epoch`` and skip the first ``consumed`` samples of it (all processes together;
        a multiple of the number of processes)."""
        super().set_epoch(epoch)
        self.consumed = consumed

    @property
    def start(self) -> int:
        """Samples of this process's share already trained on."""
        return min(self.consumed // self.num_replicas, self.num_samples)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of ``epoch``, well mixed (numpy's ``SeedSequence``)."""
    entropy = [seed % 2**63, epoch, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


class SeededSamples(Dataset):
    """``dataset[index]`` with torch's, Python's and numpy's global generators seeded from
    :func:`sample_seed` for the call and restored afterwards.

    :attr:`epoch` is set by the trainer before each epoch's DataLoader iterator is created (workers
    are not persistent, so they receive it).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        seed = sample_seed(self.seed, self.epoch, index)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset!r}, seed={self.seed}, epoch={self.epoch})"
