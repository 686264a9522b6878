"""Who sees which samples: the part every layout's math relies on.

Epoch e shuffles with a permutation of (seed, e) alone. Global step s takes
the s-th slice of batch_size indices; worker r of W takes the r-th contiguous
part of it, and split_and_load cuts that into its D device parts. The last,
partial batch is trimmed to a multiple of W*D, so every worker runs the same
number of steps (a worker that stops early leaves its peers waiting in an
allreduce); every update divides by batch_size, the tail's too, as the
textbook's trainer.step(batch_size) does.
"""
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import UsageError


def permutation(n, seed, epoch):
    """The same on every rank, with no communication: int32 indices, shape (n,)."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def usable_batch_sizes(batch_size, parts, around=2):
    """Batch sizes near batch_size that parts divides, for an error message."""
    below = batch_size - batch_size % parts
    return [b for b in (below - parts * k for k in range(around - 1, -1, -1)) if b > 0] + \
        [below + parts * k for k in range(1, around + 1)]


@dataclass(frozen=True)
class EpochPlan:
    """The steps of every epoch for `parts` = workers x devices; checked once.

    Raises UsageError if batch_size is larger than the samples (no epoch would
    fill one batch: the update would divide by more samples than it summed), not
    divisible by parts, or if there are fewer samples than parts (no step could
    give every part a sample)."""
    samples: int
    batch_size: int
    workers: int
    devices: int
    drop_last: bool = False

    def __post_init__(self):
        parts = self.parts
        if self.batch_size % parts:
            near = ', '.join(map(str, usable_batch_sizes(self.batch_size, parts)))
            raise UsageError(f'--batch-size {self.batch_size} is not divisible by workers x devices '
                             f'= {parts}: use a multiple of {parts} (e.g. {near})')
        if not self.step_sizes:
            raise UsageError(f'{self.samples} training samples, fewer than '
                             f'{"a batch" if self.drop_last else f"workers x devices = {parts}"}: '
                             'use more data or fewer workers or devices')
        if self.batch_size > self.samples:
            largest = self.samples - self.samples % parts
            raise UsageError(f'--batch-size {self.batch_size} is larger than the {self.samples} training samples '
                             f'(a batch that no epoch fills): use at most {largest}, one step an epoch')

    @property
    def parts(self):
        return self.workers * self.devices

    @cached_property
    def step_sizes(self):
        """Global samples of each step: full batches, then the tail trimmed to a
        multiple of parts (none with drop_last)."""
        full, tail = divmod(self.samples, self.batch_size)
        tail = 0 if self.drop_last else tail - tail % self.parts
        return (self.batch_size,) * full + ((tail,) if tail else ())

    @property
    def samples_per_epoch(self):
        return sum(self.step_sizes)

    def worker_indices(self, seed, epoch, rank):
        """This worker's sample indices for one epoch: (full, tail).

        full: int32 (full steps, batch_size // workers), one row a step; tail:
        int32 (its part of the trimmed last batch,), empty if none."""
        perm = permutation(self.samples, seed, epoch)
        steps, local = self.samples // self.batch_size, self.batch_size // self.workers
        full = perm[:steps * self.batch_size].reshape(steps, self.batch_size)
        t = self.step_sizes[-1] if len(self.step_sizes) > steps else 0
        tail = perm[steps * self.batch_size:steps * self.batch_size + t]
        part = slice(rank * t // self.workers, (rank + 1) * t // self.workers)
        return (np.ascontiguousarray(full[:, rank * local:(rank + 1) * local]),
                np.ascontiguousarray(tail[part]))


def eval_range(n, rank, world):
    """The r-th of W contiguous parts of the test set: no padding, no duplicates."""
    return n * rank // world, n * (rank + 1) // world
