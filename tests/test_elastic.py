"""Elastic training for real (issue 26): launch/elastic.sh runs horovodrun's
elastic mode over Gloo on namespace hosts (tests/cluster_fixtures.NetnsHosts),
one slot a host, and the tests kill workers with SIGKILL or add a host to the
hostfile that the discovery script reads. The result must be the
uninterrupted one-process run's within 1e-5.

The world sizes met here (3, 2, 1) all divide the global batch of 96 and the
epoch's tail (6000 = 62 x 96 + 48), so no world trims a sample (README: "The
tail rule"). DISTSOFTMAX_FAULT=sleep makes each step last long enough for a
kill to land mid-epoch; no test is timed except to bound a hang."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cluster_fixtures as cf
from harness import ROOT, env, load_params, saved_epoch

pytestmark = pytest.mark.cluster
ELASTIC = os.path.join(ROOT, 'launch', 'elastic.sh')
EPOCHS = 3
FLAGS = ['--synthetic', '6000', '--batch-size', '96', '--epochs', str(EPOCHS)]
SLOW = 'sleep=0.04'       # s added to every step: an epoch of 63 steps lasts a few seconds
TOL = 1e-5


@pytest.fixture(scope='module')
def hosts(tmp_path_factory):
    cf.require_cluster()
    h = cf.NetnsHosts(tmp_path_factory.mktemp('hosts'), ['a', 'b', 'c'], subnet='10.213.9')
    try:
        h.create()
        h.start_sshd()
        yield h
    finally:
        h.destroy()


@pytest.fixture(scope='module')
def single(tmp_path_factory):
    """The uninterrupted one-process run's final parameters."""
    cf.require_cluster()
    ckpt = tmp_path_factory.mktemp('single') / 'ckpt'
    r = subprocess.run([sys.executable, '-m', 'distsoftmax', *FLAGS, '--quiet', '--checkpoint-dir', str(ckpt)],
                       cwd=ROOT, env=cf.cluster_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return load_params(ckpt / 'model.params')


def close_to(ckpt, want):
    got = load_params(os.path.join(ckpt, 'model.params'))
    assert got.keys() == want.keys()
    return max(float(np.abs(got[k] - want[k]).max()) for k in want)


class Job:
    """launch/elastic.sh on host a, its output collected as it comes."""

    def __init__(self, hosts, tmp, names, *args, **extra):
        self.hosts, self.hostfile = hosts, tmp / 'hosts'
        self.hostfile.write_text(''.join(f'{n} slots=1\n' for n in names))
        self.ckpt = tmp / 'ckpt'
        e = cf.cluster_env(HOSTFILE=self.hostfile, SSH_IDENTITY_FILE=hosts.key, NETWORK_INTERFACE='eth0',
                        DISTSOFTMAX_FAULT=SLOW, **extra)
        self.p = subprocess.Popen(hosts.exec_argv('a', [ELASTIC, *FLAGS, '--checkpoint-dir', str(self.ckpt),
                                                        *args]),
                                  cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        self.lines, self.seen = [], set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._look, daemon=True)
        self._watch.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line)

    def _look(self):
        while not self._stop.is_set():
            for n in self.hosts.names:
                if self.hosts.ranks(n):
                    self.seen.add(n)
            time.sleep(0.2)

    @property
    def out(self):
        return ''.join(self.lines)

    def wait_epoch(self, epoch, timeout=180):
        cf.wait_for(lambda: saved_epoch(self.ckpt) >= epoch or self.p.poll() is not None, timeout,
                    f'epoch {epoch}')
        assert self.p.poll() is None, self.out

    def kill_worker_on(self, host, sig=signal.SIGKILL):
        ranks = self.hosts.ranks(host)
        assert len(ranks) == 1, (host, ranks, self.out)
        os.kill(ranks[0][0], sig)

    def host_of_rank(self, rank):
        """The host whose worker horovodrun started as this rank."""
        for n in self.hosts.names:
            for pid, _ in self.hosts.ranks(n):
                with open(f'/proc/{pid}/environ', 'rb') as f:
                    if f'HOROVOD_RANK={rank}'.encode() in f.read().split(b'\0'):
                        return n
        raise AssertionError(f'no rank {rank}: {self.out}')

    def finish(self, timeout=240):
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass                     # the returncode stays None, and the test shows the output
        finally:
            hung = self.p.poll() is None
            if hung:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
            self._reader.join(10)
            self._stop.set()
            self._watch.join(5)
        return None if hung else self.p.returncode


def resets(out):
    """The world sizes rank 0 announced after each reset."""
    return [int(n) for n in re.findall(r'elastic: (\d+) worker\(s\) now', out)]


@pytest.mark.parametrize('victim', ['b', 'a'], ids=['a-worker', 'rank0'])
def test_a_killed_worker_leaves_and_the_result_is_the_one_process_result(hosts, single, tmp_path, victim):
    """3 hosts, MIN_NP 2: kill -9 of one host's worker mid-epoch (host a's is rank 0)."""
    job = Job(hosts, tmp_path, ['a', 'b', 'c'], MIN_NP=2)
    job.wait_epoch(1)
    time.sleep(1.5)                  # into epoch 2, past its first commit
    job.kill_worker_on(victim)
    rc = job.finish()
    out = job.out
    assert rc == 0, out
    assert resets(out) == [2], out
    assert 'done: horovod (elastic), 2 worker(s)' in out, out
    assert job.seen == {'a', 'b', 'c'}, job.seen
    assert close_to(job.ckpt, single) < TOL, out
    assert 'Traceback' not in out and 'uncaught exception' not in out, out
    hosts.assert_no_rank_left()


def test_a_host_added_to_the_discovery_joins(hosts, single, tmp_path):
    job = Job(hosts, tmp_path, ['a', 'b'], MIN_NP=1)
    job.wait_epoch(1)
    with open(job.hostfile, 'a') as f:
        f.write('c slots=1\n')
    rc = job.finish()
    out = job.out
    assert rc == 0, out
    assert resets(out) == [3], out
    assert 'done: horovod (elastic), 3 worker(s)' in out, out
    assert 'c' in job.seen, job.seen
    assert close_to(job.ckpt, single) < TOL, out
    hosts.assert_no_rank_left()


def test_a_cut_link_leaves_and_the_result_is_the_one_process_result(hosts, single, tmp_path):
    """3 hosts, MIN_NP 2: host c's link is cut mid-epoch (its worker neither
    works nor dies, and nothing reaches it). horovodrun's ssh to c gives up on
    its keepalives, the survivors' Gloo times out, and they go on as 2; c's
    worker, cut off, ends by itself. (Cut off from the launch host instead,
    the survivors cannot reach horovodrun's driver: the job ends in one line.)"""
    job = Job(hosts, tmp_path, ['a', 'b', 'c'], '--timeout', '60', MIN_NP=2)
    job.wait_epoch(1)
    time.sleep(1.5)                  # into epoch 2, past its first commit
    victim = 'c'                     # not a: horovodrun's own host, whose driver the survivors need
    hosts.link(victim, up=False)
    try:
        rc = job.finish(timeout=300)
        out = job.out
        assert rc == 0, out
        assert resets(out) == [2], out
        assert close_to(job.ckpt, single) < TOL, out
        assert 'Traceback' not in out, out
        # the cut-off worker's own watch ends it: --timeout after it could not re-join
        try:
            cf.wait_for(lambda: not hosts.leftovers(victim), 180, f'the worker on {victim} to end')
        except TimeoutError as e:
            raise AssertionError(f'{e}: {hosts.leftovers(victim)}') from None
    finally:
        hosts.link(victim, up=True)
    hosts.assert_no_rank_left()


def the_line(out):
    """The one line a failed job says: nothing else of ours or of elastic.sh's, no traceback."""
    said = [line for line in out.splitlines()
            if 'distsoftmax: error:' in line or 'elastic.sh:' in line or 'no progress' in line]
    assert len(said) == 1, out
    assert 'Traceback' not in out, out
    return said[0]


@pytest.mark.parametrize('names, min_np', [(['a', 'b'], 2), (['a', 'b', 'c'], 3)], ids=['2-hosts', '3-hosts'])
def test_below_min_np_ends_in_one_line(hosts, tmp_path, names, min_np):
    """MIN_NP is every host: the survivors of a kill cannot go on. Within the
    elastic timeout (10 s) and its SIGTERM, one line (the lowest survivor's,
    also with 2 survivors), no traceback, nothing left."""
    job = Job(hosts, tmp_path, names, '--timeout', '60', MIN_NP=min_np, ELASTIC_TIMEOUT=10)
    job.wait_epoch(1)
    job.kill_worker_on(names[-1])
    t0 = time.monotonic()
    rc = job.finish(timeout=120)
    took = time.monotonic() - t0
    out = job.out
    assert rc != 0, out
    line = the_line(out)
    assert 'could not be re-formed' in line, out
    assert took < 90, f'{took:.0f} s'
    assert 1 <= saved_epoch(job.ckpt) < EPOCHS
    hosts.assert_no_rank_left()


@pytest.mark.parametrize('stopped', [1, 0], ids=['rank1', 'rank0'])
def test_a_stopped_worker_ends_the_job_in_one_line(hosts, tmp_path, stopped):
    """SIGSTOP of one worker: it neither works nor dies. After --timeout the
    lowest rank that still answers says so, naming the silent one; horovodrun,
    which would wait for the stopped worker for ever, is stopped GRACE s later,
    and nothing is left on any host."""
    job = Job(hosts, tmp_path, ['a', 'b'], '--timeout', '15', MIN_NP=1, GRACE=5)
    job.wait_epoch(1)
    job.kill_worker_on(job.host_of_rank(stopped), signal.SIGSTOP)
    rc = job.finish(timeout=150)
    out = job.out
    assert rc is not None and rc != 0, out
    line = the_line(out)
    assert 'no progress for' in line and f'rank(s) {stopped} did not answer' in line, out
    assert ('rank 1: ' in line) == (stopped == 0), out
    hosts.assert_no_rank_left()


def test_ctrl_c_of_elastic_sh_is_said_once_and_resumes(hosts, single, tmp_path):
    """Ctrl-C reaches elastic.sh's process group: one line, what was kept named,
    nothing left, and --resume finishes the one-process result."""
    job = Job(hosts, tmp_path, ['a', 'b'], MIN_NP=1)
    job.wait_epoch(1)
    os.killpg(job.p.pid, signal.SIGINT)
    rc = job.finish(timeout=120)
    out = job.out
    said = [line for line in out.splitlines() if 'distsoftmax: ' in line and 'interrupted' in line]
    assert rc == 130, out
    assert len(said) == 1 and f'stays in {job.ckpt}' in said[0], out
    assert 'Traceback' not in out and 'elastic.sh:' not in out, out
    hosts.assert_no_rank_left()
    again = Job(hosts, tmp_path, ['a', 'b'], '--resume', MIN_NP=1)
    assert again.finish() == 0, again.out
    assert close_to(job.ckpt, single) < TOL, again.out


# -- on this host alone: two loopback "hosts" (localhost, 127.0.0.1), one slot each

def local_elastic(tmp, *args, **extra):
    hostfile = tmp / 'local-hosts'
    hostfile.write_text('localhost slots=1\n127.0.0.1 slots=1\n')
    return subprocess.run([ELASTIC, *args], cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env=env(HOSTFILE=hostfile, **extra))


@pytest.mark.launcher
def test_an_elastic_run_resumes_from_its_checkpoint_after_a_full_stop_and_evaluates(tmp_path):
    ckpt = tmp_path / 'ckpt'
    short = [f if f != str(EPOCHS) else '2' for f in FLAGS]
    r = local_elastic(tmp_path, *short, '--quiet', '--checkpoint-dir', ckpt)
    assert r.returncode == 0, r.stdout + r.stderr
    assert saved_epoch(ckpt) == 2
    r = local_elastic(tmp_path, *FLAGS, '--checkpoint-dir', ckpt, '--resume')
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'resumed from {ckpt} after epoch 2' in r.stdout, r.stdout
    one = tmp_path / 'one'
    s = subprocess.run([sys.executable, '-m', 'distsoftmax', *FLAGS, '--quiet', '--checkpoint-dir', str(one)],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert s.returncode == 0, s.stderr
    assert close_to(ckpt, load_params(one / 'model.params')) < TOL
    # evaluate under horovodrun's elastic mode: the evaluation of one process
    r = local_elastic(tmp_path, 'evaluate', '--checkpoint-dir', ckpt)
    s = subprocess.run([sys.executable, '-m', 'distsoftmax', 'evaluate', '--checkpoint-dir', str(ckpt)],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and s.returncode == 0, r.stdout + r.stderr + s.stderr
    accuracy = re.compile(r'test acc \d\.\d+ \(\d+/\d+\)')
    assert accuracy.findall(r.stdout) == accuracy.findall(s.stdout) != [], r.stdout


@pytest.mark.launcher
@pytest.mark.parametrize('args, extra, code, says', [
    (['--batch-size', '97'], {}, 2, '--batch-size 97 is not divisible by workers x devices = 2'),
    (['--layout', 'mpi'], {}, 2, 'needs the horovod layout'),
    ([], {'DISTSOFTMAX_COMMIT_STEPS': '0'}, 2, 'DISTSOFTMAX_COMMIT_STEPS=0: must be a positive integer'),
], ids=['batch', 'layout', 'commit-steps'])
def test_bad_input_in_elastic_mode_is_one_line(tmp_path, args, extra, code, says):
    r = local_elastic(tmp_path, '--synthetic', '600', '--epochs', '1', *args, **extra)
    out = r.stdout + r.stderr
    errors = [line for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert r.returncode == code, out
    assert len(errors) == 1 and says in errors[0], out
    assert 'Traceback' not in out, out


@pytest.mark.launcher
@pytest.mark.parametrize('hostfile, extra, says', [
    ('localhost slots=x\n', {}, "line 1: 'localhost slots=x' is not 'host slots=N' or 'host:N'"),
    ('localhost slots=1\n', {'MIN_NP': '2'}, 'MIN_NP 2 is more than NP 1: lower MIN_NP'),
    ('localhost slots=1\n127.0.0.1 slots=1\n', {'MAX_NP': '1'}, 'MAX_NP 1 is less than NP 2'),
    ('localhost slots=1\n', {'SSH_ALIVE': '0'}, "SSH_ALIVE must be a positive integer, not '0'"),
], ids=['hostfile-line', 'min-np', 'max-np', 'ssh-alive'])
def test_bad_settings_of_elastic_sh_are_one_line(tmp_path, hostfile, extra, says):
    (tmp_path / 'hosts').write_text(hostfile)
    r = subprocess.run([ELASTIC, '--synthetic', '600', '--epochs', '1'], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=env(HOSTFILE=tmp_path / 'hosts', **extra))
    assert r.returncode == 2 and r.stdout == '', r.stdout + r.stderr
    assert r.stderr.count('\n') == 1 and says in r.stderr, r.stderr


# Horovod's log pads the microseconds with spaces (`51. 90870`): a CI run caught a line the filter let by
@pytest.mark.parametrize('line', [
    '[0]<stderr>:[2026-12-02 03:32:51. 90870: E /tmp/horovod/common/operations.cc:697] [0]: Horovod background'
    ' loop uncaught exception: [/tmp/gloo/transport/tcp/pair.cc:598] Connection closed by peer [10.213.9.2]:46467',
    '[2]<stderr>:[2026-12-02 03:32:51.910500: E /tmp/horovod/common/operations.cc:697] [2]: Horovod background'
    ' loop uncaught exception: [/tmp/gloo/transport/tcp/pair.cc:589] Read error [10.213.9.2]:42911: Connection reset',
    '[1]<stderr>:Killed',
], ids=['padded-microseconds', 'microseconds', 'killed'])
def test_elastic_sh_drops_horovods_log_of_a_peer_that_left(tmp_path, line):
    kept = '[0]<stdout>:epoch 1, loss 0.6327'
    script = (f'work={tmp_path}\n'
              f'eval "$(sed -n \'/^filter_launcher() {{/,/^}}/p\' {ELASTIC})"\n'
              'filter_launcher')
    r = subprocess.run(['bash', '-c', script], input=f'{line}\n{kept}\n', capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == kept + '\n', r.stdout + r.stderr
