"""One rank's failure is the job's failure (README: "Errors and exit codes").

Each case runs under horovodrun --gloo, horovodrun --mpi and plain mpirun with
mpi4py: the job ends within 20 s, non-zero, with exactly one
`distsoftmax: error:` line, no traceback of ours, and no process left.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import harness
from harness import (TAGGED, finish, horovod_available, load_params, no_traceback_of_ours, run_cli, same,
                     saved_epoch, start, tagged_ranks)

pytestmark = [pytest.mark.launcher,
              pytest.mark.skipif(not horovod_available() or not shutil.which('mpirun'),
                                 reason='needs Horovod with MXNet and mpirun (./bootstrap.sh setup)')]
LAUNCHERS = ['horovodrun-gloo', 'horovodrun-mpi', 'mpirun']
TINY = ['--synthetic', '600', '--epochs', '1', '--quiet']


@pytest.fixture(scope='module')
def good(tmp_path_factory):
    ck = tmp_path_factory.mktemp('good') / 'ck'
    r = run_cli(*TINY, '--checkpoint-dir', ck)
    assert r.returncode == 0, r.stderr
    return ck


def _truncated(ck):
    state = json.load(open(ck / 'state.json'))
    path = ck / state['files']['model.params']['path']
    os.remove(ck / 'model.params')
    open(path, 'r+b').truncate(100)


# (ranks, args, the error line's text); {ck}: a copy of a good checkpoint of TINY
CASES = [
    (2, ['--epochs', '0'], '--epochs: 0 must be a positive number'),
    (2, [*TINY, '--lr', '1e39'], '--lr: 1e39 must be a positive number below'),
    (3, ['--synthetic', '600', '--quiet'], '--batch-size 256 is not divisible by workers x devices = 3'),
    (2, ['--synthetic', '1', '--batch-size', '2', '--quiet'], '1 training samples, fewer than workers x devices = 2'),
    (2, [*TINY, '--checkpoint-dir', '{tmp}/afile'], 'exists and is not a directory'),
    (2, [*TINY, '--metrics', '/proc/m.jsonl'], '--metrics /proc/m.jsonl: cannot write in /proc'),
    (2, [*TINY, '--checkpoint-dir', '{ck}'], 'holds a checkpoint of epoch 1; pass --resume'),
    (2, [*TINY, '--checkpoint-dir', '{ck}', '--resume', '--lr', '0.2'], 'made with --lr 0.1, this run has 0.2'),
    (2, ['--synthetic', '700', '--quiet', '--checkpoint-dir', '{ck}', '--resume'], 'trained on synthetic data (600'),
    (2, [*TINY, '--checkpoint-dir', '{ck:truncated}', '--resume'], 'SHA-256 differs from state.json'),
    (2, [*TINY, '--layout', 'local'], '--layout local under a launcher of 2 ranks'),
    (2, ['evaluate', '--checkpoint-dir', '{ck}', '--synthetic', '99'], 'not --synthetic 99'),
    (3, [*TINY, '--checkpoint-dir', '{ck}', '--resume', '--epochs', '2'],
     "--batch-size 256, the checkpoint's, is not divisible by workers x devices = 3: resume it at a world size "
     'that divides it (1, 2, 4, 8'),
]


@pytest.mark.parametrize('how', LAUNCHERS)
@pytest.mark.parametrize('np_,args,message', CASES, ids=[' '.join(map(str, c[1]))[:50] for c in CASES])
def test_a_bad_input_ends_the_job_with_one_line(how, np_, args, message, tmp_path, good):
    ck = tmp_path / 'ck'
    shutil.copytree(good, ck)
    open(tmp_path / 'afile', 'w').close()
    resolved = []
    for a in args:
        if a == '{ck:truncated}':
            _truncated(ck)
            a = '{ck}'
        resolved.append(a.format(tmp=tmp_path, ck=ck))
    p = start(how, np_, resolved)
    out = finish(p)
    assert p.returncode != 0, out
    errors = [line for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert len(errors) == 1 and message in errors[0], out[-3000:]
    no_traceback_of_ours(out)


@pytest.mark.parametrize('how', LAUNCHERS)
def test_a_failed_checkpoint_write_on_rank_0_ends_the_job_with_one_line(how, tmp_path):
    ck = tmp_path / 'ck'
    p = start(how, 2, ['--synthetic', '3000', '--epochs', '3', '--quiet', '--checkpoint-dir', ck],
              DISTSOFTMAX_FAULT='fail_writing=model.params@2')
    out = finish(p)
    assert p.returncode != 0, out
    errors = [line for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert len(errors) == 1 and 'cannot write epoch 2 (No space left on device); the last complete ' \
        f'checkpoint (epoch-0001) stays in {ck}' in errors[0], out[-3000:]
    no_traceback_of_ours(out)
    assert saved_epoch(ck) == 1


@pytest.mark.parametrize('how', LAUNCHERS)
def test_dry_run_checks_at_the_real_world_size(how, tmp_path):
    p = start(how, 2, [*TINY, '--checkpoint-dir', tmp_path / 'ck', '--dry-run'])
    out = finish(p)
    assert p.returncode == 0, out
    assert 'dry run: ' in out and '2 worker(s)' in out and 'every check passed' in out
    assert not os.path.exists(tmp_path / 'ck' / 'state.json')


RUN = ['--synthetic', '3000', '--batch-size', '128', '--quiet', '--epochs', '3']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    out = {}
    for how in LAUNCHERS:
        ck = tmp_path_factory.mktemp(how) / 'ck'
        p = start(how, 2, [*RUN, '--checkpoint-dir', ck])
        assert p.wait(timeout=120) == 0, p.stdout.read()
        out[how] = load_params(ck / 'model.params')
    return out


@pytest.mark.parametrize('how', LAUNCHERS)
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL], ids=['SIGTERM', 'kill-9'])
def test_a_stopped_rank_stops_the_job_and_its_checkpoint_resumes(how, sig, tmp_path, uninterrupted):
    ck = tmp_path / 'ck'
    p = start(how, 2, [*RUN, '--checkpoint-dir', ck], DISTSOFTMAX_FAULT='sleep=0.02')
    deadline = time.monotonic() + 60
    while saved_epoch(ck) < 1:               # then rank 1 is in epoch 2
        assert time.monotonic() < deadline and p.poll() is None, p.stdout.read()
        time.sleep(0.01)
    victim = next(pid for pid, r in tagged_ranks(p.tag).items() if r == 1)
    os.kill(victim, sig)
    out = finish(p)
    assert p.returncode != 0, out
    assert 'Traceback' not in '\n'.join(line for line in out.splitlines() if TAGGED.match(line)), out
    assert saved_epoch(ck) in (1, 2), out
    p = start(how, 2, [*RUN, '--checkpoint-dir', ck, '--resume'])
    out = finish(p, within=120)
    assert p.returncode == 0, out
    assert same(load_params(ck / 'model.params'), uninterrupted[how])


@pytest.mark.parametrize('how', ['horovodrun-mpi', 'mpirun'])
def test_sigterm_to_the_launcher_is_said_once(how, tmp_path):
    """The launcher forwards SIGTERM to every rank; rank 0 speaks for the job."""
    ck = tmp_path / 'ck'
    p = start(how, 2, [*RUN, '--checkpoint-dir', ck], DISTSOFTMAX_FAULT='sleep=0.02')
    deadline = time.monotonic() + 60
    while saved_epoch(ck) < 1:
        assert time.monotonic() < deadline and p.poll() is None, p.stdout.read()
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGTERM)
    out = finish(p)
    said = [line for line in out.splitlines() if 'interrupted by SIGTERM' in line]
    assert len(said) == 1 and f'stays in {ck}' in said[0], out[-3000:]
    assert 'rank 1' not in said[0] and 'Traceback' not in out


def test_a_directory_in_use_is_refused_and_the_first_run_goes_on(tmp_path, uninterrupted):
    ck = tmp_path / 'ck'
    first = start('horovodrun-gloo', 2, [*RUN, '--checkpoint-dir', ck], DISTSOFTMAX_FAULT='sleep=0.1')
    deadline = time.monotonic() + 60
    while not (ck / '.lock.owner').exists():
        assert time.monotonic() < deadline and first.poll() is None, first.stdout.read()
        time.sleep(0.01)
    r = run_cli(*RUN, '--checkpoint-dir', ck, '--resume')
    assert r.returncode == 1 and r.stderr.count('distsoftmax: error:') == 1, r.stderr
    assert re.search(r'in use by another run \(pid \d+ on \S+\)', r.stderr), r.stderr
    assert first.wait(timeout=120) == 0, first.stdout.read()
    assert same(load_params(ck / 'model.params'), uninterrupted['horovodrun-gloo'])


# -- writes that fail: a full disk under each output, a stdout that cannot be written

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs of the test's own (root), filled on demand by fill(); unmounted after."""
    if os.geteuid() != 0 or not shutil.which('mount'):
        pytest.skip('mounting a tmpfs needs root')
    where = tmp_path / 'disk'
    where.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(where)], check=True)

    yield where
    subprocess.run(['umount', '-l', str(where)], check=False)


def fill(disk):
    """Write to the disk until it is full."""
    with open(disk / 'filler', 'wb') as f:
        try:
            while True:
                f.write(b'\0' * 65536)
                f.flush()
        except OSError:
            pass


WRITE_RUN = ['--synthetic', '3000', '--epochs', '4', '--quiet']


def _one_error(out):
    errors = [line for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert len(errors) == 1, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    return errors[0]


@pytest.mark.parametrize('how', ['local', 'mpirun'])
def test_a_full_disk_under_the_checkpoint_is_one_line_and_keeps_the_last(how, small_disk):
    ck = small_disk / 'ck'
    args = [*WRITE_RUN, '--checkpoint-dir', ck]
    if how == 'local':
        p = subprocess.Popen([sys.executable, '-m', 'distsoftmax', *map(str, args)], cwd=harness.ROOT,
                             env=harness.env(DISTSOFTMAX_FAULT='sleep=0.05'), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        p.tag = None
    else:
        p = start(how, 2, args, DISTSOFTMAX_FAULT='sleep=0.05')
    deadline = time.monotonic() + 60
    while saved_epoch(ck) < 1:
        assert time.monotonic() < deadline and p.poll() is None, p.stdout.read()
        time.sleep(0.01)
    fill(small_disk)
    out = p.communicate(timeout=60)[0] if p.tag is None else finish(p, within=60)
    assert p.returncode != 0, out
    line = _one_error(out)
    assert 'cannot write epoch' in line and 'No space left on device' in line, line
    assert 'the last complete checkpoint (epoch-000' in line and f'stays in {ck}' in line, line
    os.remove(small_disk / 'filler')
    kept = saved_epoch(ck)
    assert kept >= 1 and os.path.isfile(ck / f'epoch-{kept:04d}' / 'model.params')
    assert sorted(f for f in os.listdir(ck) if f.startswith('epoch-')) == [f'epoch-{kept:04d}']
    r = run_cli(*WRITE_RUN, '--checkpoint-dir', ck, '--resume')     # and it resumes
    assert r.returncode == 0, r.stderr


def test_a_full_disk_under_metrics_names_the_file_and_what_was_kept(small_disk):
    fill(small_disk)
    r = run_cli(*WRITE_RUN, '--metrics', small_disk / 'm.jsonl')
    assert r.returncode == 1
    line = _one_error(r.stdout + r.stderr)
    assert f'--metrics {small_disk}/m.jsonl: cannot write epoch 1 (No space left on device); ' \
        'no --checkpoint-dir, so nothing was kept' in line, line


def test_a_full_disk_under_the_plot_comes_after_the_done_line(small_disk, tmp_path):
    fill(small_disk)
    r = run_cli(*WRITE_RUN, '--plot', small_disk / 'p.png', '--checkpoint-dir', tmp_path / 'ck')
    assert r.returncode == 1
    assert r.stdout.startswith('done: '), r.stdout
    line = _one_error(r.stdout + r.stderr)
    assert f'--plot {small_disk}/p.png: cannot write' in line and f'stays in {tmp_path}/ck' in line, line


@pytest.mark.parametrize('quiet', [[], ['--quiet']], ids=['lines', 'quiet'])
def test_a_stdout_that_cannot_be_written_does_not_lose_the_run(quiet, tmp_path):
    with open('/dev/full', 'w') as full:
        r = subprocess.run([sys.executable, '-m', 'distsoftmax', '--synthetic', '3000', '--epochs', '3', *quiet,
                            '--checkpoint-dir', str(tmp_path / 'ck')], cwd=harness.ROOT, env=harness.env(),
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[0] == ('distsoftmax: error: cannot write to stdout (No space left on device); training goes '
                        'on, and the run will exit 1 at its end'), r.stderr
    assert len(lines) == 2 and 'stdout could not be written' in lines[1] and 'stays in' in lines[1], r.stderr
    assert saved_epoch(tmp_path / 'ck') == 3 and 'Traceback' not in r.stderr


# -- signals from the first instruction to the last

@pytest.mark.parametrize('after', [0.5, 1, 2], ids=['0.5s', '1s', '2s'])
def test_sigint_at_any_moment_exits_130_with_the_line(after, tmp_path):
    codes = []
    for i in range(7):
        p = subprocess.Popen([sys.executable, '-m', 'distsoftmax', '--synthetic', '6000', '--epochs', '100000',
                              '--quiet', '--checkpoint-dir', str(tmp_path / f'ck{i}')], cwd=harness.ROOT,
                             env=harness.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(after + 0.1 * i)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        codes.append(p.returncode)
        assert p.returncode == 130, (p.returncode, err)
        assert err.count('distsoftmax: interrupted by SIGINT') == 1 and 'Traceback' not in err, err
    assert codes == [130] * 7


def test_sigusr1_is_a_graceful_stop(tmp_path):
    ck = tmp_path / 'ck'
    p = subprocess.Popen([sys.executable, '-m', 'distsoftmax', *RUN, '--epochs', '50', '--checkpoint-dir', str(ck)],
                         cwd=harness.ROOT, env=harness.env(DISTSOFTMAX_FAULT='sleep=0.02'), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while saved_epoch(ck) < 1:
        assert time.monotonic() < deadline and p.poll() is None, p.stderr.read()
        time.sleep(0.01)
    p.send_signal(signal.SIGUSR1)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 138, err
    assert err.count('distsoftmax: interrupted by SIGUSR1 in epoch') == 1 and 'stays in' in err, err
    r = run_cli(*RUN, '--epochs', '4', '--checkpoint-dir', ck, '--resume')
    assert r.returncode == 0, r.stderr


def test_evaluate_honours_sigterm(tmp_path):
    ck = tmp_path / 'ck'
    assert run_cli(*TINY, '--checkpoint-dir', ck).returncode == 0
    p = subprocess.Popen([sys.executable, '-m', 'distsoftmax', 'evaluate', '--checkpoint-dir', str(ck)],
                         cwd=harness.ROOT, env=harness.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 143 and 'interrupted by SIGTERM' in err, (p.returncode, out, err)


# -- every rank reads the same data

def test_ranks_with_different_data_are_refused_naming_them(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    from distsoftmax import data
    harness.write_idx_dir(a, data.synthetic(seed=3, n_train=600, n_test=100))
    harness.write_idx_dir(b, data.synthetic(seed=4, n_train=600, n_test=100))
    rank = ['-x', 'OMP_NUM_THREADS', '-x', 'PATH', '-x', 'PYTHONUNBUFFERED']
    args = [sys.executable, '-m', 'distsoftmax', '--no-verify', '--epochs', '1', '--quiet', '--layout', 'mpi']
    cmd = ['mpirun', *harness.MPI_ROOT_ARGS, '-np', '1', *rank, '-x', f'DISTSOFTMAX_DATA={a}', *args,
           ':', '-np', '1', *rank, '-x', f'DISTSOFTMAX_DATA={b}', *args]
    r = subprocess.run(cmd, cwd=harness.ROOT, env=harness.env(), capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    line = _one_error(r.stdout + r.stderr)
    assert 'the ranks read different data: rank 1 on ' in line and "differ from rank 0's" in line, line


@pytest.mark.parametrize('how', ['horovodrun-gloo', 'horovodrun-mpi'])
def test_ctrl_c_of_horovodrun_is_said_once(how, tmp_path):
    """Ctrl-C reaches horovodrun's whole process group; it ends its workers with
    SIGTERM, and rank 0 alone says so."""
    ck = tmp_path / 'ck'
    p = start(how, 2, [*RUN, '--epochs', '50', '--checkpoint-dir', ck], DISTSOFTMAX_FAULT='sleep=0.02')
    deadline = time.monotonic() + 60
    while saved_epoch(ck) < 1:
        assert time.monotonic() < deadline and p.poll() is None, p.stdout.read()
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGINT)
    out = finish(p)
    said = [line for line in out.splitlines() if 'distsoftmax: ' in line and 'interrupted' in line]
    assert len(said) == 1 and 'rank 1' not in said[0] and f'stays in {ck}' in said[0], out[-3000:]


@pytest.mark.parametrize('flag', ['--metrics', '--plot'])
def test_a_full_disk_under_rank_0s_outputs_under_mpirun_is_one_line(flag, small_disk, tmp_path):
    fill(small_disk)
    p = start('mpirun', 2, [*WRITE_RUN, flag, small_disk / ('m.jsonl' if flag == '--metrics' else 'p.png'),
                            '--checkpoint-dir', tmp_path / 'ck'])
    out = finish(p, within=60)
    assert p.returncode != 0, out
    line = _one_error(out)
    assert f'{flag} {small_disk}/' in line and 'cannot write' in line and f'stays in {tmp_path}/ck' in line, line
