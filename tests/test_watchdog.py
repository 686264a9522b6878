"""No job hangs: a rank that stops instead of dying (SIGSTOP: a hung disk, a
swapped-out node) ends the job within --timeout plus a few seconds, with one
line from a survivor, under every launcher (README: "No job hangs")."""
import os
import shutil
import signal
import time

import pytest

from harness import (finish, horovod_available, load_params, no_traceback_of_ours, same, saved_epoch, start,
                     tagged_ranks)

pytestmark = [pytest.mark.launcher,
              pytest.mark.skipif(not horovod_available() or not shutil.which('mpirun'),
                                 reason='needs Horovod with MXNet and mpirun (./bootstrap.sh setup)')]
LAUNCHERS = ['horovodrun-gloo', 'horovodrun-mpi', 'mpirun-horovod', 'mpirun']
TIMEOUT = 6        # s: short, so the test is; the bound below adds the 20 s
RUN = ['--synthetic', '3000', '--batch-size', '120', '--quiet', '--epochs', '5', '--timeout', str(TIMEOUT)]
SLOW = 'sleep=0.05'   # s a step: an epoch of 25 steps takes over a second, so the stop lands mid-run


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    out = {}
    for how in LAUNCHERS:
        ck = tmp_path_factory.mktemp(how) / 'ck'
        p = start(how, 2, [*RUN, '--checkpoint-dir', ck])
        assert p.wait(timeout=180) == 0, p.stdout.read()
        out[how] = load_params(ck / 'model.params')
    return out


def _stop_mid_run(how, np_, victim_rank, ck):
    p = start(how, np_, [*RUN, '--checkpoint-dir', ck], DISTSOFTMAX_FAULT=SLOW)
    deadline = time.monotonic() + 120
    while saved_epoch(ck) < 1:
        assert time.monotonic() < deadline and p.poll() is None, p.stdout.read()
        time.sleep(0.01)
    victim = next(pid for pid, r in tagged_ranks(p.tag).items() if r == victim_rank)
    os.kill(victim, signal.SIGSTOP)
    return p


@pytest.mark.parametrize('how', LAUNCHERS)
@pytest.mark.parametrize('np_,victim', [(2, 1), (2, 0), (3, 2), (3, 0)],
                         ids=['np2-rank1', 'np2-rank0', 'np3-rank2', 'np3-rank0'])
def test_a_stopped_rank_ends_the_job_with_one_line(how, np_, victim, tmp_path, uninterrupted):
    ck = tmp_path / 'ck'
    p = _stop_mid_run(how, np_, victim, ck)
    out = finish(p, within=TIMEOUT + 20)            # the stopped rank included: nothing may be left
    assert p.returncode != 0, out
    errors = [line for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert len(errors) == 1, out[-3000:]
    assert f'(--timeout {TIMEOUT} s): rank(s) {victim} did not answer' in errors[0], errors
    assert 'waited' in errors[0] and 'epoch ' in errors[0], errors
    no_traceback_of_ours(out)
    if np_ == 2:        # the last checkpoint is whole and resumes bit-equal
        assert saved_epoch(ck) >= 1
        p = start(how, 2, [*RUN, '--checkpoint-dir', ck, '--resume'])
        out = finish(p, within=180)
        assert p.returncode == 0, out
        assert same(load_params(ck / 'model.params'), uninterrupted[how])


@pytest.mark.parametrize('how', ['horovodrun-gloo', 'mpirun'])
def test_64_ranks_start_and_finish_on_two_cores(how):
    """Start-up gets its own, longer allowance (and Gloo's rendezvous timeout
    follows it): 64 ranks that each import mxnet on 2 cores take minutes to meet."""
    p = start(how, 64, ['--synthetic', '640', '--batch-size', '64', '--epochs', '1', '--quiet'])
    out = finish(p, within=1200)
    assert p.returncode == 0, out[-3000:]
    assert 'done: ' in out and '64 worker(s)' in out, out[-3000:]
