"""The cluster recipes of launch/ run for real on this one machine: a Slurm
cluster (munged, slurmctld, two slurmd nodes on localhost), several hosts
(network namespaces with their own sshd) and the MPIJob's pods (namespaces as
a launcher and two workers). See tests/cluster_fixtures.py; `pytest -m cluster`.

They need root, network namespaces and the packages bootstrap.sh installs;
elsewhere they skip and say why (DISTSOFTMAX_CLUSTER_TESTS=require turns that
into a failure, for CI)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cluster_fixtures as cf
from harness import BIN, FAULTS, REAL, ROOT, load_params, saved_epoch, tagged_ranks

pytestmark = pytest.mark.cluster
LAUNCH = os.path.join(ROOT, 'launch')
EPOCHS = 3
FLAGS = ['--synthetic', '3000', '--quiet', '--batch-size', '256']
TOL = 0.003  # test accuracy of N ranks vs one process (as tests/test_train.py)


def summary(path):
    with open(path) as f:
        last = json.loads(f.read().splitlines()[-1])
    assert last.get('summary'), last
    return last


def same_params(a, b):
    got, want = load_params(os.path.join(a, 'model.params')), load_params(os.path.join(b, 'model.params'))
    assert got.keys() == want.keys()
    return all(np.array_equal(got[k], want[k]) for k in want)


@pytest.fixture(scope='module')
def single(tmp_path_factory):
    """Test accuracy of one process: the synthetic run every test here repeats."""
    cf.require_cluster()
    m = tmp_path_factory.mktemp('single') / 'm.jsonl'
    r = subprocess.run([sys.executable, '-m', 'distsoftmax', *FLAGS, '--epochs', str(EPOCHS),
                        '--metrics', str(m)], cwd=ROOT, env=cf.cluster_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return summary(m)['test_acc']


@pytest.fixture(scope='module')
def single_real(tmp_path_factory):
    if REAL is None:
        pytest.skip('dataset-fashion-mnist not installed')
    m = tmp_path_factory.mktemp('single_real') / 'm.jsonl'
    r = subprocess.run([sys.executable, '-m', 'distsoftmax', '--quiet', '--data-dir', REAL,
                        '--metrics', str(m)], cwd=ROOT, env=cf.cluster_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return summary(m)['test_acc']


# ====================================================================== Slurm

@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    cf.require_cluster()
    c = cf.SlurmCluster(tmp_path_factory.mktemp('slurm'))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def sbatch(slurm, tmp, *args, wait=True, sbatch_args=(), **extra):
    """sbatch launch/slurm.sbatch on both nodes, one CPU task each; (job id, output file)."""
    out = os.path.join(tmp, 'job-%j.out')
    cmd = ['sbatch', '--parsable', '--nodes=2', '--ntasks-per-node=1', '--cpus-per-task=1',
           f'--output={out}', *sbatch_args]
    if wait:
        cmd.append('--wait')
    cmd += [os.path.join(LAUNCH, 'slurm.sbatch'), *map(str, args)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=slurm.env(cf.cluster_env(SHARED=tmp, **extra)))
    job = r.stdout.strip().split(';')[0]
    path = out.replace('%j', job)
    text = open(path).read() if os.path.exists(path) else ''
    if wait:
        assert r.returncode == 0, f'{cmd}: exit {r.returncode}\n{r.stderr}\n{text}\n{slurm.logs()}'
    else:
        assert r.returncode == 0 and job.isdigit(), r.stderr
    return job, path


@pytest.fixture(scope='module')
def slurm_synthetic(slurm, tmp_path_factory):
    """The synthetic run through slurm.sbatch: its checkpoint is the reference
    of the requeue test."""
    tmp = tmp_path_factory.mktemp('sbatch_synthetic')
    ckpt, m = tmp / 'ckpt', tmp / 'm.jsonl'
    t = time.monotonic()
    job, out = sbatch(slurm, tmp, *FLAGS, '--epochs', EPOCHS, '--checkpoint-dir', ckpt,
                      '--metrics', m)
    return dict(job=job, out=open(out).read(), ckpt=ckpt, metrics=m, seconds=time.monotonic() - t)


def test_sbatch_synthetic_on_two_nodes_matches_one_process(slurm, slurm_synthetic, single):
    s = summary(slurm_synthetic['metrics'])
    # no --gpus-per-node (a GPU-less cluster), no --data-dir next to --synthetic
    assert (s['layout'], s['world_size'], s['epochs']) == ('horovod', 2, EPOCHS), s
    assert s['replicas_identical']
    assert abs(s['test_acc'] - single) <= TOL, (s['test_acc'], single)
    assert 'srun ended with exit 0' in slurm_synthetic['out']
    job = slurm.job(slurm_synthetic['job'])
    assert (job['JobState'], job['ExitCode'], job['NodeList']) == ('COMPLETED', '0:0', 'n[1-2]'), job


def test_sbatch_refuses_nothing_without_gpus(slurm, tmp_path):
    """The old fixed --gpus-per-node=4 failed here; an explicit 0 works too."""
    r = subprocess.run(['sbatch', '--test-only', '--nodes=2', '--ntasks-per-node=1',
                        '--cpus-per-task=1', os.path.join(LAUNCH, 'slurm.sbatch'), '--synthetic'],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=slurm.env(cf.cluster_env(SHARED=tmp_path)))
    assert r.returncode == 0, r.stderr
    r = subprocess.run(['sbatch', '--test-only', '--gpus-per-node=4', '--nodes=2',
                        '--ntasks-per-node=1', '--cpus-per-task=1',
                        os.path.join(LAUNCH, 'slurm.sbatch')],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=slurm.env(cf.cluster_env(SHARED=tmp_path)))
    assert r.returncode != 0 and 'Invalid generic resource' in r.stderr, r.stderr


@pytest.mark.skipif(REAL is None, reason='dataset-fashion-mnist not installed')
def test_sbatch_real_data_on_two_nodes_matches_one_process(slurm, single_real, tmp_path):
    m = tmp_path / 'm.jsonl'
    job, out = sbatch(slurm, tmp_path, '--quiet', '--metrics', m, DATA=REAL)
    s = summary(m)
    assert (s['layout'], s['world_size'], s['epochs']) == ('horovod', 2, 5), s
    assert abs(s['test_acc'] - single_real) <= TOL, (s['test_acc'], single_real)


@pytest.mark.parametrize('backend', ['horovod', 'mpi'])
def test_srun_backend_on_two_nodes(slurm, single, tmp_path, backend):
    m = tmp_path / 'm.jsonl'
    r = subprocess.run(['srun', '--nodes=2', '--ntasks=2', '--mpi=pmix', '--kill-on-bad-exit=1',
                        sys.executable, '-m', 'distsoftmax', '--layout', backend, *FLAGS,
                        '--epochs', str(EPOCHS), '--metrics', str(m)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=slurm.env(cf.cluster_env()))
    assert r.returncode == 0, r.stdout + r.stderr + slurm.logs()
    s = summary(m)
    assert (s['layout'], s['world_size']) == (backend, 2), s
    assert abs(s['test_acc'] - single) <= TOL, (s['test_acc'], single)


def _wait_job(slurm, job, states, timeout, what):
    try:
        return cf.wait_for(lambda: (lambda j: j if j.get('JobState') in states else None)(slurm.job(job)),
                           timeout, what)
    except TimeoutError as e:
        raise AssertionError(f'{e}: {slurm.job(job)}\n{slurm.logs()}') from None


def _wait_epoch(slurm, job, ckpt, out, timeout=120):
    def saved():
        if saved_epoch(ckpt) >= 1:
            return True
        j = slurm.job(job)
        if j.get('JobState') not in ('PENDING', 'RUNNING', 'CONFIGURING'):
            raise AssertionError(f'job ended before epoch 1: {j}\n{open(out).read()}')
    try:
        cf.wait_for(saved, timeout, 'epoch 1 saved')
    except TimeoutError as e:
        text = open(out).read() if os.path.exists(out) else ''
        raise AssertionError(f'{e}: {slurm.job(job)}\n{text}\n{slurm.logs()}') from None


def test_requeue_by_usr1_resumes_and_ends_bit_equal(slurm, slurm_synthetic, tmp_path):
    ckpt = tmp_path / 'ckpt'
    job, out = sbatch(slurm, tmp_path, *FLAGS, '--epochs', EPOCHS, '--checkpoint-dir', ckpt,
                      wait=False, DISTSOFTMAX_FAULT='sleep=0.03')
    _wait_epoch(slurm, job, ckpt, out)
    slurm.run('scancel', '--batch', '--signal=USR1', job)
    # requeued: pending again, with a begin time about 2 minutes ahead; start it now
    j = _wait_job(slurm, job, ('PENDING',), 60, 'the job requeued')
    assert saved_epoch(ckpt) < EPOCHS, 'the run ended before the requeue: slow it down'
    assert j['Restarts'] == '1', j
    # slurmd refused a start in the same second as the requeue ("Job credential revoked")
    time.sleep(2)
    slurm.run('scontrol', 'update', f'JobId={job}', 'StartTime=now')
    j = _wait_job(slurm, job, ('COMPLETED', 'FAILED', 'CANCELLED'), 180, 'the requeued job ended')
    text = open(out).read()
    assert j['JobState'] == 'COMPLETED', text + slurm.logs()
    assert 'requeueing job' in text and 'run 2,' in text, text
    assert saved_epoch(ckpt) == EPOCHS
    assert same_params(ckpt, slurm_synthetic['ckpt']), 'requeued run differs from the uninterrupted one'


def test_max_requeues_reached_stops_the_ranks_gracefully(slurm, tmp_path):
    ckpt = tmp_path / 'ckpt'
    job, out = sbatch(slurm, tmp_path, *FLAGS, '--epochs', 50, '--checkpoint-dir', ckpt,
                      wait=False, MAX_REQUEUES=0, DISTSOFTMAX_FAULT='sleep=0.03')
    _wait_epoch(slurm, job, ckpt, out)
    stopped = time.monotonic()
    slurm.run('scancel', '--batch', '--signal=USR1', job)
    j = _wait_job(slurm, job, ('COMPLETED', 'FAILED', 'CANCELLED', 'PENDING'), 120, 'the job ended')
    took = time.monotonic() - stopped
    text = open(out).read()
    print(f'MAX_REQUEUES: job {j["JobState"]} {j["ExitCode"]} {took:.1f} s after USR1\n{text}')
    assert 'stopping the ranks (SIGTERM)' in text, text
    assert j['JobState'] != 'PENDING' and j['Restarts'] == '0', j  # not requeued
    # SIGTERM reached the ranks (not srun's SIGKILL): they stop by themselves
    # and say so, exit 143; nothing was killed, and the checkpoint stays whole
    assert 'interrupted by SIGTERM' in text, text
    codes = re.findall(r'task \d+: Exited with exit code (\d+)', text)
    assert set(codes) <= {'143'}, text
    assert 'Killed' not in text and 'exit code 137' not in text, text
    assert j['ExitCode'].split(':')[0] == '143', j
    assert 1 <= saved_epoch(ckpt) < 50
    assert took < 60, f'the ranks took {took:.0f} s to stop'


# ============================================================= several hosts

@pytest.fixture(scope='module')
def hosts(tmp_path_factory):
    cf.require_cluster()
    h = cf.NetnsHosts(tmp_path_factory.mktemp('hosts'), ['a', 'b'])
    try:
        h.create()
        h.start_sshd()
        yield h
    finally:
        h.destroy()


def hostfile(tmp, names):
    path = tmp / 'hosts'
    path.write_text(''.join(f'{n} slots=1\n' for n in names))
    return path


class Watch:
    """Which hosts ran a distsoftmax process while a command ran."""

    def __init__(self, hosts):
        self.hosts, self.seen, self.stop = hosts, set(), threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.is_set():
            for n in self.hosts.names:
                if self.hosts.ranks(n):
                    self.seen.add(n)
            time.sleep(0.1)

    def done(self):
        self.stop.set()
        self.t.join()
        return self.seen


def run_on(hosts, host, cmd, timeout=240, **extra):
    """CMD on HOST (its namespace, its name), from the worktree; (rc, output)."""
    p = subprocess.Popen(hosts.exec_argv(host, cmd), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=cf.cluster_env(**extra),
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, out


@pytest.fixture(scope='module')
def multihost_gloo(hosts, tmp_path_factory):
    """multihost.sh over Gloo on a and b, launched from a: the reference run of
    the recovery test."""
    tmp = tmp_path_factory.mktemp('multihost_gloo')
    ckpt, m = tmp / 'ckpt', tmp / 'm.jsonl'
    watch = Watch(hosts)
    rc, out = run_on(hosts, 'a', [os.path.join(LAUNCH, 'multihost.sh'), '--gloo', *FLAGS,
                                  '--epochs', str(EPOCHS), '--checkpoint-dir', str(ckpt),
                                  '--metrics', str(m)],
                     HOSTFILE=hostfile(tmp, ['a', 'b']), SSH_IDENTITY_FILE=hosts.key,
                     HOROVOD_GLOO_IFACE='eth0')
    return dict(rc=rc, out=out, ckpt=ckpt, metrics=m, seen=watch.done())


def test_multihost_sh_gloo_on_two_hosts_matches_one_process(hosts, multihost_gloo, single):
    assert multihost_gloo['rc'] == 0, multihost_gloo['out']
    s = summary(multihost_gloo['metrics'])
    assert (s['layout'], s['world_size']) == ('horovod', 2), s
    assert abs(s['test_acc'] - single) <= TOL, (s['test_acc'], single)
    assert multihost_gloo['seen'] == {'a', 'b'}, multihost_gloo['seen']
    hosts.assert_no_rank_left()


def test_multihost_sh_mpi_on_two_hosts_matches_one_process(hosts, single, tmp_path):
    m = tmp_path / 'm.jsonl'
    watch = Watch(hosts)
    # a value with spaces in HOROVODRUN_ARGS: one option of mpirun's
    rc, out = run_on(hosts, 'a', [os.path.join(LAUNCH, 'multihost.sh'), '--mpi', *FLAGS,
                                  '--epochs', str(EPOCHS), '--metrics', str(m)],
                     HOSTFILE=hostfile(tmp_path, ['a', 'b']), SSH_IDENTITY_FILE=hosts.key,
                     HOROVOD_GLOO_IFACE='eth0',
                     HOROVODRUN_ARGS="--mpi-args '--mca orte_base_help_aggregate 0'")
    seen = watch.done()
    assert rc == 0, out
    s = summary(m)
    assert (s['layout'], s['world_size']) == ('horovod', 2), s
    assert abs(s['test_acc'] - single) <= TOL, (s['test_acc'], single)
    assert seen == {'a', 'b'}, seen
    hosts.assert_no_rank_left()


def test_mpi_sh_with_a_hostfile_of_two_hosts(hosts, single, tmp_path):
    m = tmp_path / 'm.jsonl'
    watch = Watch(hosts)
    # the ssh key through MPIRUN_ARGS: a quoted value with spaces
    rc, out = run_on(hosts, 'a', [os.path.join(LAUNCH, 'mpi.sh'), *FLAGS, '--epochs', str(EPOCHS),
                                  '--metrics', str(m)],
                     HOSTFILE=hostfile(tmp_path, ['a', 'b']), NP=2,
                     MPIRUN_ARGS=f"--mca plm_rsh_args '-i {hosts.key} -o ConnectTimeout=10' "
                                 "-x PYTHONPATH --mca btl_tcp_if_include eth0")
    seen = watch.done()
    assert rc == 0, out
    s = summary(m)
    assert (s['layout'], s['world_size']) == ('mpi', 2), s
    assert abs(s['test_acc'] - single) <= TOL, (s['test_acc'], single)
    assert seen == {'a', 'b'}, seen
    hosts.assert_no_rank_left()


def test_recover_sh_over_two_hosts_with_the_remote_rank_killed(hosts, multihost_gloo, tmp_path):
    assert multihost_gloo['rc'] == 0, multihost_gloo['out']
    ckpt = tmp_path / 'ckpt'
    p = subprocess.Popen(
        hosts.exec_argv('a', [os.path.join(LAUNCH, 'recover.sh'), '--gloo', *FLAGS, '--epochs',
                              str(EPOCHS), '--checkpoint-dir', str(ckpt)]),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
        env=cf.cluster_env(LAUNCHER=os.path.join(LAUNCH, 'multihost.sh'),
                        HOSTFILE=hostfile(tmp_path, ['a', 'b']), SSH_IDENTITY_FILE=hosts.key,
                        HOROVOD_GLOO_IFACE='eth0', BACKOFF=1, MAX_RESTARTS=2,
                        DISTSOFTMAX_FAULT='sleep=0.03'))
    log = []
    reader = threading.Thread(target=lambda: log.extend(p.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while saved_epoch(ckpt) < 1:   # the dry run's ranks have come and gone by then
            assert time.monotonic() < deadline and p.poll() is None, ''.join(log)
            time.sleep(0.01)
        victim = next((pid for pid, _ in hosts.ranks('b')), None)
        assert victim is not None, 'no rank found on host b'
        os.kill(victim, signal.SIGKILL)
        assert saved_epoch(ckpt) < EPOCHS, 'the run finished before the kill: slow it down'
        p.wait(timeout=180)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    reader.join(timeout=10)
    out = ''.join(log)
    assert p.returncode == 0, out
    assert re.search(r'attempt 1 failed with exit [1-9]', out), out
    assert 'attempt 2 succeeded' in out, out
    assert saved_epoch(ckpt) == EPOCHS
    assert same_params(ckpt, multihost_gloo['ckpt']), 'the recovered run differs'
    hosts.assert_no_rank_left()


# ------------------------------------------------------ the Gloo hostname trap

@pytest.mark.parametrize('resolves_to', ['127.0.1.1', None], ids=['loopback', 'unresolved'])
def test_multihost_sh_stops_before_gloo_where_a_host_name_does_not_resolve(
        hosts, tmp_path, resolves_to):
    """On b, its own name resolves to Debian's 127.0.1.1 or to nothing: Horovod
    0.28.1's Gloo fails there ("Connection refused", a segfault) and once left
    a rank running for minutes. multihost.sh stops first, with the fix."""
    path = f'/etc/netns/{hosts.ns["b"]}/hosts'
    good = open(path).read()
    bad = f'127.0.0.1 localhost\n{hosts.addr["a"]} a\n'
    if resolves_to:
        bad += f'{resolves_to} b\n'
    try:
        with open(path, 'w') as f:  # in place: sshd's bind mount of it sees the change
            f.write(bad)
        t = time.monotonic()
        rc, out = run_on(hosts, 'a', [os.path.join(LAUNCH, 'multihost.sh'), '--gloo', *FLAGS, '--epochs', '1'],
                         timeout=60, HOSTFILE=hostfile(tmp_path, ['a', 'b']),
                         SSH_IDENTITY_FILE=hosts.key, HOROVOD_GLOO_IFACE='eth0')
        took = time.monotonic() - t
    finally:
        with open(path, 'w') as f:
            f.write(good)
    lines = out.strip().splitlines()
    assert rc == 2, out
    assert len(lines) == 1, out
    assert f"on b the host name 'b' resolves to {resolves_to or 'nothing'}" in lines[0], out
    assert f"'{hosts.addr['b']} b' in /etc/hosts" in lines[0], out
    assert took < 30
    hosts.assert_no_rank_left(wait=0)


# ========================================================== the MPIJob's pods

JOB = 'distsoftmax'
WORKERS = [f'{JOB}-worker-0', f'{JOB}-worker-1']
# the operator's hostfile names a worker by its name under the job's service
FQDN = {w: f'{w}.{JOB}-worker.default.svc' for w in WORKERS}


def mpijob():
    yaml = pytest.importorskip('yaml')
    with open(os.path.join(LAUNCH, 'mpijob.yaml')) as f:
        text = f.read()
    job = next(d for d in yaml.safe_load_all(text) if d and d['kind'] == 'MPIJob')
    # the plain-mpirun variant, a YAML block in the launcher's comment
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if 'Plain MPI instead' in line)
    block = []
    for line in lines[start + 1:]:
        m = re.match(r'\s*#   (.*)$', line)
        if not m:
            if block:
                break
            continue
        block.append(m.group(1))
    return job, yaml.safe_load('\n'.join(block))


@pytest.fixture(scope='module')
def pods(tmp_path_factory):
    """The launcher and two worker pods; the workers run the YAML's own command."""
    cf.require_cluster()
    job, _ = mpijob()
    spec = job['spec']
    worker = spec['mpiReplicaSpecs']['Worker']['template']['spec']['containers'][0]
    assert spec['sshAuthMountPath'] == '/home/app/.ssh'
    p = cf.Pods(tmp_path_factory.mktemp('pods'), [f'{JOB}-launcher', *WORKERS],
                aliases={w: [FQDN[w]] for w in WORKERS})
    try:
        p.create()
        for w in WORKERS:
            p.start(w, f'sshd-{w}', [*worker['command'], *worker['args']], env=pod_env())
        for w in WORKERS:  # up: the launcher reaches it as the operator's key's owner
            cf.wait_for(lambda w=w: subprocess.run(
                p.exec_argv(f'{JOB}-launcher', ['ssh', '-p', '2222', '-o', 'BatchMode=yes',
                                               '-o', 'StrictHostKeyChecking=no',
                                               '-o', 'UserKnownHostsFile=/dev/null', FQDN[w], 'true'],
                            user=cf.APP_UID),
                env=pod_env(), capture_output=True).returncode == 0, 30, f'sshd of {w}')
        yield p         # no data on the shared volume: the pods find the image's (here: the host's) own
    finally:
        p.destroy()


def pod_env(**extra):
    """The image's environment: its PATH (the venv first), its user's home."""
    e = {'PATH': f'{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
         'HOME': '/home/app', 'USER': 'app', 'LANG': 'C.UTF-8', 'PYTHONPATH': ROOT,
         'LD_LIBRARY_PATH': '/usr/local/nvidia/lib64'}  # as the CUDA base image sets it
    e.update({k: str(v) for k, v in extra.items()})
    return e


def launcher_command(pods, container, epochs=1):
    """The launcher's command from the YAML, scaled to this machine: one slot per
    worker instead of 4 GPUs, 1 epoch; /shared is the pods' shared directory and
    /etc/mpi/hostfile the one the operator would write."""
    hostfile = os.path.join(pods.top, 'hostfile')
    with open(hostfile, 'w') as f:
        f.write(''.join(f'{FQDN[w]} slots=1\n' for w in WORKERS))
    cmd = [str(t) for t in container['command'] + container['args']]
    cmd[cmd.index('-np') + 1] = str(len(WORKERS))
    cmd[cmd.index('--epochs') + 1] = str(epochs)
    cmd = [t.replace('/etc/mpi/hostfile', hostfile).replace('/shared', pods.shared) for t in cmd]
    if container['command'] == ['mpirun']:  # the operator's hostfile, as the operator passes it
        cmd[1:1] = ['--hostfile', hostfile]
    return cmd


@pytest.mark.skipif(REAL is None, reason='dataset-fashion-mnist not installed')
@pytest.mark.parametrize('variant', ['horovodrun', 'mpirun'])
def test_mpijob_pods_run_the_launcher(pods, tmp_path, variant):
    job, plain = mpijob()
    launcher = job['spec']['mpiReplicaSpecs']['Launcher']['template']['spec']['containers'][0]
    container = dict(launcher, **plain) if variant == 'mpirun' else launcher
    cmd = launcher_command(pods, container)
    for f in ('metrics.jsonl',):
        if os.path.exists(os.path.join(pods.shared, f)):
            os.remove(os.path.join(pods.shared, f))
    shutil.rmtree(os.path.join(pods.shared, 'ckpt'), ignore_errors=True)
    watch = Watch(pods)
    p = subprocess.run(pods.exec_argv(f'{JOB}-launcher', cmd, user=cf.APP_UID), cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env=pod_env(OMP_NUM_THREADS=1))
    seen = watch.done()
    assert p.returncode == 0, f'{cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}'
    s = summary(os.path.join(pods.shared, 'metrics.jsonl'))
    assert (s['layout'], s['world_size']) == ({'horovodrun': 'horovod', 'mpirun': 'mpi'}[variant], 2), s
    assert seen == set(WORKERS), seen  # the ranks ran on the workers, none on the launcher
    assert saved_epoch(os.path.join(pods.shared, 'ckpt')) == 1
    pods.assert_no_rank_left()


@pytest.mark.parametrize('without', ['host-key-options', '-x PATH'])
def test_mpijob_mpirun_variant_needs_what_it_has(pods, without):
    """The faults of the YAML's former plain-mpirun comment, shown in the pods:
    no StrictHostKeyChecking=no (host key verification fails), no -x PATH
    (sshd sessions lack the image's PATH: python not found)."""
    job, plain = mpijob()
    launcher = job['spec']['mpiReplicaSpecs']['Launcher']['template']['spec']['containers'][0]
    args = list(plain['args'])
    if without == '-x PATH':
        i = next(i for i in range(len(args) - 1) if args[i:i + 2] == ['-x', 'PATH'])
        del args[i:i + 2]
    else:
        i = args.index('plm_rsh_args')
        args[i + 1] = '-p 2222'
    cmd = launcher_command(pods, dict(launcher, command=plain['command'], args=args))
    p = subprocess.run(pods.exec_argv(f'{JOB}-launcher', cmd, user=cf.APP_UID), cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=pod_env(OMP_NUM_THREADS=1))
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    if without == '-x PATH':
        assert re.search(r'unable to find the specified executable|python.*not found', out, re.I), out
    else:
        assert 'Host key verification failed' in out, out
    pods.assert_no_rank_left()


def test_a_failed_gloo_run_leaves_no_rank_on_any_host(hosts, tmp_path):
    """Both hosts' names on 127.0.1.1 and the check skipped: Horovod's Gloo fails
    ("Connection refused") and the rank on b used to stay, stuck in Gloo's
    retries; multihost.sh now ends what is left of its run on every host."""
    paths = {n: f'/etc/netns/{hosts.ns[n]}/hosts' for n in hosts.names}
    good = {n: open(p).read() for n, p in paths.items()}
    try:
        for n, p in paths.items():
            with open(p, 'w') as f:
                f.write(''.join(f'{"127.0.1.1" if m == n else a} {m}\n' for m, a in hosts.addr.items()))
        rc, out = run_on(hosts, 'a', [os.path.join(LAUNCH, 'multihost.sh'), '--gloo', *FLAGS, '--epochs', '1'],
                         timeout=120, HOSTFILE=hostfile(tmp_path, ['a', 'b']), CHECK_HOSTS=0,
                         SSH_IDENTITY_FILE=hosts.key, HOROVOD_GLOO_IFACE='eth0')
    finally:
        for n, p in paths.items():
            with open(p, 'w') as f:
                f.write(good[n])
    assert rc != 0, out
    assert 'Connection refused' in out, out
    print(out[-600:])
    hosts.assert_no_rank_left(wait=3)


def test_sigterm_of_multihost_sh_stops_every_rank(hosts, tmp_path):
    """SIGTERM to multihost.sh (as recover.sh sends it) reaches horovodrun,
    and no rank stays on any host."""
    ckpt = tmp_path / 'ckpt'
    p = subprocess.Popen(hosts.exec_argv('a', [os.path.join(LAUNCH, 'multihost.sh'), '--gloo', *FLAGS,
                                               '--epochs', '20', '--checkpoint-dir', str(ckpt)]),
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True,
                         env=cf.cluster_env(HOSTFILE=hostfile(tmp_path, ['a', 'b']),
                                         SSH_IDENTITY_FILE=hosts.key, HOROVOD_GLOO_IFACE='eth0',
                                         DISTSOFTMAX_FAULT='sleep=0.03'))
    try:
        cf.wait_for(lambda: saved_epoch(ckpt) >= 1 or p.poll() is not None, 120, 'epoch 1')
        assert p.poll() is None, p.stdout.read()
        p.send_signal(signal.SIGTERM)  # multihost.sh's own PID: ip netns exec and unshare exec it
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode != 0, out
    assert 1 <= saved_epoch(ckpt) < 20
    hosts.assert_no_rank_left(wait=10)


# -- no job hangs: a stopped rank under srun, a cut link between two hosts

STALL_TIMEOUT = 6   # s, --timeout of these runs


@pytest.mark.parametrize('backend', ['horovod', 'mpi'])
def test_a_stopped_rank_under_srun_ends_the_step(slurm, tmp_path, backend):
    ckpt, tag = tmp_path / 'ckpt', f'srun-stall-{backend}-{os.getpid()}'
    p = subprocess.Popen(['srun', '--nodes=2', '--ntasks=2', '--mpi=pmix', '--kill-on-bad-exit=1',
                          sys.executable, '-m', 'distsoftmax', '--layout', backend, *FLAGS, '--epochs', '20',
                          '--timeout', str(STALL_TIMEOUT), '--checkpoint-dir', str(ckpt)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True,
                         env=slurm.env(cf.cluster_env(DISTSOFTMAX_FAULT='sleep=0.03', DISTSOFTMAX_TEST_TAG=tag,
                                                   PYTHONPATH=os.pathsep.join([ROOT, FAULTS]))))
    try:
        cf.wait_for(lambda: saved_epoch(ckpt) >= 1 or p.poll() is not None, 120, 'epoch 1')
        assert p.poll() is None, p.stdout.read()
        victim = next(pid for pid, rank in tagged_ranks(tag).items() if rank == 1)
        os.kill(victim, signal.SIGSTOP)
        out, _ = p.communicate(timeout=STALL_TIMEOUT + 20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode != 0, out
    errors = [line for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert len(errors) == 1 and 'rank(s) 1 did not answer' in errors[0], out
    assert 'Traceback' not in out, out
    cf.wait_for(lambda: not tagged_ranks(tag), 15, 'every rank, the stopped one too, to be ended')


@pytest.mark.parametrize('controller', ['--gloo', '--mpi'])
def test_a_cut_link_ends_a_multihost_job_on_both_hosts(hosts, tmp_path, controller):
    ckpt = tmp_path / 'ckpt'
    run = [os.path.join(LAUNCH, 'multihost.sh'), controller, *FLAGS, '--epochs', '20',
           '--timeout', str(STALL_TIMEOUT), '--checkpoint-dir', str(ckpt)]
    settings = dict(HOSTFILE=hostfile(tmp_path, ['a', 'b']), SSH_IDENTITY_FILE=hosts.key,
                    HOROVOD_GLOO_IFACE='eth0')
    p = subprocess.Popen(hosts.exec_argv('a', run), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True,
                         env=cf.cluster_env(DISTSOFTMAX_FAULT='sleep=0.03',
                                         PYTHONPATH=os.pathsep.join([ROOT, FAULTS]), **settings))
    try:
        cf.wait_for(lambda: saved_epoch(ckpt) >= 1 or p.poll() is not None, 120, 'epoch 1')
        assert p.poll() is None, p.stdout.read()
        hosts.link('b', up=False)
        t0 = time.monotonic()
        out, _ = p.communicate(timeout=STALL_TIMEOUT + 40)
        print(f'ended {time.monotonic() - t0:.1f} s after the cut')
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        # the far host ends its own share, with no word from the launch host
        try:
            cf.wait_for(lambda: not hosts.leftovers('b'), STALL_TIMEOUT + 40, 'the ranks on b to end')
        except TimeoutError as e:
            raise AssertionError(f'{e}: {hosts.leftovers("b")}') from None
        finally:
            hosts.link('b', up=True)
    assert p.returncode != 0, out
    errors = [line for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert len(errors) == 1 and 'did not answer' in errors[0], out
    hosts.assert_no_rank_left(wait=10)
    rc, out = run_on(hosts, 'a', [*run, '--resume'], **settings)
    assert rc == 0, out
