"""Who sees which samples: the part every layout's math relies on.

Rule: epoch e shuffles with a permutation of (seed, e) alone. Global step s
takes the s-th slice of batch_size indices; worker r of W takes the r-th
contiguous part of it, and split_and_load cuts that into D device parts. The
last, partial batch is trimmed to a multiple of W*D, so every worker runs the
same number of steps (a worker that stops early hangs Horovod).
"""
import numpy as np

from .errors import UserError


def permutation(n, seed, epoch):
    """The same on every rank, with no communication."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def check_batch(batch_size, parts):
    if batch_size % parts:
        raise UserError(f'--batch-size {batch_size} is not divisible by workers x devices = {parts}')


def step_sizes(n, batch_size, parts):
    """Global samples per step; the tail is trimmed to a multiple of parts."""
    check_batch(batch_size, parts)
    full, tail = divmod(n, batch_size)
    tail -= tail % parts
    return [batch_size] * full + ([tail] if tail else [])


def worker_indices(perm, batch_size, parts, rank, world):
    """This worker's sample indices for one epoch.

    Returns (full, tail): full is (steps, batch_size // world), one row a step;
    tail is the worker's part of the trimmed last batch (empty if none).
    """
    sizes = step_sizes(len(perm), batch_size, parts)
    steps = len(perm) // batch_size
    local = batch_size // world
    full = perm[:steps * batch_size].reshape(steps, batch_size)[:, rank * local:(rank + 1) * local]
    t = sizes[-1] if len(sizes) > steps else 0
    tail = perm[steps * batch_size:steps * batch_size + t]
    tail = tail[rank * t // world:(rank + 1) * t // world]
    return np.ascontiguousarray(full), np.ascontiguousarray(tail)


def eval_range(n, rank, world):
    """The r-th of W contiguous parts of the test set: no padding, no duplicates."""
    return n * rank // world, n * (rank + 1) // world
