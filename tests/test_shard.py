import subprocess
import sys

import numpy as np
import pytest

from distsoftmax import shard
from distsoftmax.errors import UsageError


@pytest.mark.parametrize('world', [1, 2, 3, 4, 8])
@pytest.mark.parametrize('devices', [1, 2])
@pytest.mark.parametrize('n,batch', [(60000, 240), (6000, 48), (1000, 48)])
def test_workers_together_see_the_single_process_batch(n, batch, world, devices):
    plan = shard.EpochPlan(n, batch, world, devices)
    perm = shard.permutation(n, 7, 3)
    sizes = plan.step_sizes
    per_worker = [plan.worker_indices(7, 3, r) for r in range(world)]
    # every worker runs the same number of steps
    steps = {len(full) + (len(tail) > 0) for full, tail in per_worker}
    assert steps == {len(sizes)}
    seen = []
    for s, size in enumerate(sizes):
        parts_at_s = [full[s] if s < len(full) else tail for full, tail in per_worker]
        union = np.concatenate(parts_at_s)
        # the union is exactly the single-process batch, in order, disjoint parts
        assert np.array_equal(union, perm[s * batch:s * batch + size])
        assert len({len(p) for p in parts_at_s}) == 1 and len(parts_at_s[0]) % devices == 0
        seen.append(union)
    seen = np.concatenate(seen)
    assert len(np.unique(seen)) == len(seen)


def sizes(n, batch, workers, devices=1, drop_last=False):
    return list(shard.EpochPlan(n, batch, workers, devices, drop_last).step_sizes)


def test_tail_rule():
    # Fashion-MNIST: 60000 = 234 * 256 + 96. The tail is kept whole whenever
    # workers x devices divides 96 and 256: 1, 2, 4, 8, 16 and 32
    for parts in (1, 2, 4, 8, 16, 32):
        assert sizes(60000, 256, parts) == [256] * 234 + [96]
    assert sizes(60000, 256 * 3, 3)[-1] == 96 - 96 % 3
    assert sizes(1000, 100, 4) == [100] * 10          # no tail
    assert sizes(1003, 100, 4) == [100] * 10          # tail 3 < 4: trimmed away
    assert sizes(1010, 100, 4) == [100] * 10 + [8]    # 10 -> 8
    assert sizes(60000, 256, 2, drop_last=True) == [256] * 234
    with pytest.raises(UsageError, match='not divisible by workers x devices = 3: use a multiple of 3 '
                                         r'\(e.g. 252, 255, 258, 261\)'):
        shard.EpochPlan(60000, 256, 3, 1)
    with pytest.raises(UsageError, match='3 training samples, fewer than workers x devices = 4'):
        shard.EpochPlan(3, 4, 2, 2)
    with pytest.raises(UsageError, match='100 training samples, fewer than a batch'):
        shard.EpochPlan(100, 256, 1, 1, drop_last=True)


def test_permutation_is_the_same_in_separate_processes():
    code = ('from distsoftmax import shard; import hashlib; '
            'print(hashlib.sha256(shard.permutation(60000, 5, 2).tobytes()).hexdigest())')
    outs = {subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(outs) == 1
    assert not np.array_equal(shard.permutation(100, 5, 2), shard.permutation(100, 5, 3))
    assert not np.array_equal(shard.permutation(100, 5, 2), shard.permutation(100, 6, 2))


@pytest.mark.parametrize('world', [1, 2, 3, 4, 7, 8])
def test_eval_ranges_cover_the_test_set_once(world):
    ranges = [shard.eval_range(10000, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 10000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


@pytest.mark.parametrize('world', [1, 2, 3, 4])
def test_eval_counts_sum_to_the_single_process_count(world):
    rng = np.random.default_rng(0)
    correct = rng.random(1000) < 0.8
    total = sum(correct[slice(*shard.eval_range(1000, r, world))].sum() for r in range(world))
    assert total == correct.sum()
