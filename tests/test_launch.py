"""The launch recipes in launch/: lint them, check that every distsoftmax flag
they use exists, and run the local ones for real on this machine's CPU
(synthetic data, 2 ranks, one thread each)."""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from harness import BIN, ROOT, env, horovod_available, load_params, saved_epoch, tagged_ranks

LAUNCH = os.path.join(ROOT, 'launch')
SCRIPTS = sorted(os.path.join(LAUNCH, f) for f in os.listdir(LAUNCH)
                 if f.endswith(('.sh', '.sbatch'))) + [os.path.join(ROOT, 'tests', 'gpu_check.sh')]
YAMLS = sorted(os.path.join(LAUNCH, f) for f in os.listdir(LAUNCH) if f.endswith(('.yaml', '.yml')))
SMALL = ['--synthetic', '6000', '--quiet']
# flags of the launchers, never passed to distsoftmax: local.sh / multihost.sh /
# recover.sh take a leading --gloo or --mpi
SCRIPT_FLAGS = {'--gloo', '--mpi'}
# every other --flag that may appear in launch/ belongs to one of these tools
LAUNCHER_FLAGS = {
    # horovodrun
    '--gloo', '--mpi', '--hostfile', '--network-interfaces', '--network-interface',
    '--timeline-filename', '--timeline-mark-cycles', '--mpi-args', '--verbose', '--min-np',
    '--start-timeout', '--ssh-port', '--ssh-identity-file', '--output-filename',
    '--max-np', '--host-discovery-script', '--elastic-timeout', '--blacklist-cooldown-range',  # elastic
    '--autotune', '--fusion-threshold-mb', '--cycle-time-ms', '--check-build',
    # mpirun
    '--allow-run-as-root', '--oversubscribe', '--mca', '--bind-to', '--map-by', '--tag-output',
    # srun / sbatch / scancel / scontrol
    '--job-name', '--nodes', '--ntasks-per-node', '--gpus-per-node', '--cpus-per-task',
    '--time', '--requeue', '--signal', '--open-mode', '--output', '--kill-on-bad-exit',
    '--cpu-bind', '--batch', '--wait',
    # pytest, pip and such in the README
    '--help', '--no-binary',
}


needs_horovodrun = pytest.mark.skipif(
    not os.path.exists(os.path.join(BIN, 'horovodrun')) or not horovod_available(),
    reason='horovodrun or Horovod with MXNet not installed (./bootstrap.sh setup builds them)')
needs_mpirun = pytest.mark.skipif(not shutil.which('mpirun'), reason='mpirun not installed')


def launcher_env(**extra):
    """harness.env: the venv's bin (horovodrun) first on PATH, OMP_NUM_THREADS=1."""
    return env(**extra)


def summary(path):
    lines = [json.loads(line) for line in open(path)]
    assert lines[-1].get('summary'), lines[-1]
    return lines[-1]


def run(cmd, timeout=240, **extra):
    """Run a launcher to success; on a timeout, kill it and every rank it started."""
    tag = uuid.uuid4().hex
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=launcher_env(DISTSOFTMAX_TEST_TAG=tag, **extra),
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        _kill_all(p, tag)
    assert p.returncode == 0, f'{cmd}: exit {p.returncode}\n{out[-3000:]}\n{err[-3000:]}'
    return out, err


def _kill_all(p, tag):
    """The launcher's process group, then any rank of ours that escaped it."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    for pid in tagged_ranks(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- static checks

@pytest.mark.parametrize('script', SCRIPTS, ids=os.path.basename)
def test_shellcheck(script):
    if not shutil.which('shellcheck'):
        pytest.skip('shellcheck not installed (apt-get install shellcheck)')
    p = subprocess.run(['shellcheck', '--shell=bash', '--external-sources', script],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(script) as f:
        text = f.read()
    assert text.startswith('#!/usr/bin/env bash\n')
    assert 'set -euo pipefail' in text
    assert os.access(script, os.X_OK), f'{script} is not executable'


def test_scripts_exist():
    names = {os.path.basename(p) for p in os.listdir(LAUNCH)}
    for name in ('README.md', 'common.sh', 'local.sh', 'multihost.sh', 'hosts.example', 'mpi.sh',
                 'slurm.sbatch', 'mpijob.yaml', 'recover.sh'):
        assert name in names


def test_hosts_example_is_a_horovodrun_hostfile():
    hosts = pytest.importorskip('horovod.runner.common.util.hosts')
    path = os.path.join(LAUNCH, 'hosts.example')
    assert hosts.parse_host_files(path) == 'node1:4,node2:4'


def test_recover_sh_needs_a_checkpoint_dir():
    p = subprocess.run([os.path.join(LAUNCH, 'recover.sh'), '--epochs', '1'], capture_output=True,
                       text=True, timeout=60, env=launcher_env(LAUNCHER='/bin/false'))
    assert p.returncode == 2 and '--checkpoint-dir DIR is required' in p.stderr


@pytest.mark.launcher
@needs_horovodrun
def test_recover_sh_does_not_retry_what_its_dry_run_rejects(tmp_path):
    """A batch that 2 ranks cannot split fails every attempt alike: said once, no attempt."""
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(LAUNCH, 'recover.sh'), '--synthetic', '600', '--batch-size', '7',
                        '--checkpoint-dir', str(tmp_path / 'ck')], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=launcher_env(NP=2, BACKOFF=30))
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    errors = [line.split('>:')[-1] for line in out.splitlines() if 'distsoftmax: error:' in line]
    assert errors == ['distsoftmax: error: --batch-size 7 is not divisible by workers x devices = 2: '
                      'use a multiple of 2 (e.g. 4, 6, 8, 10)'], out
    assert 'attempt' not in out and time.monotonic() - t0 < 30


def test_yaml_parses_and_mpijob_is_v2beta1():
    yaml = pytest.importorskip('yaml')
    assert YAMLS
    kinds = {}
    for path in YAMLS:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    kinds[doc['kind']] = doc
    job = kinds['MPIJob']
    assert job['apiVersion'] == 'kubeflow.org/v2beta1'
    specs = job['spec']['mpiReplicaSpecs']
    assert specs['Launcher']['replicas'] == 1 and specs['Worker']['replicas'] >= 1
    launcher = specs['Launcher']['template']['spec']['containers'][0]
    worker = specs['Worker']['template']['spec']['containers'][0]
    assert launcher['image'] == worker['image'] == 'distsoftmax:gpu'
    cmd = launcher['command'] + launcher['args']
    assert cmd[0] in ('horovodrun', 'mpirun')
    np_ = int(cmd[cmd.index('-np') + 1])
    gpus = worker['resources']['limits']['nvidia.com/gpu']
    assert gpus == job['spec']['slotsPerWorker']
    assert np_ == specs['Worker']['replicas'] * job['spec']['slotsPerWorker']
    rest = cmd[cmd.index('distsoftmax') + 1:]
    assert rest[rest.index('--checkpoint-dir') + 1].startswith('/shared/') and '--resume' in rest
    mounts = [m['mountPath'] for m in worker['volumeMounts']]
    assert '/shared' in mounts


# ------------------------------------------------------------------ flag checks

def _help_flags():
    p = subprocess.run([sys.executable, '-m', 'distsoftmax', 'train', '--help'], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env=env())
    assert p.returncode == 0, p.stderr
    return set(re.findall(r'(?<![\w-])--[a-z][a-z0-9-]*', p.stdout))


def _logical_lines(text):
    """Lines with backslash continuations joined; markdown code fences kept."""
    return re.sub(r'\\\n\s*', ' ', text).splitlines()


COMMANDS = {'horovodrun', 'mpirun', 'srun', 'sbatch', 'scancel', 'scontrol', 'kubectl', 'docker'}


def _flags_after(tokens, anchors):
    """--flags after the last anchor token (distsoftmax, or a launch script), up
    to the next command of another tool on the line."""
    idx = [i for i, t in enumerate(tokens) if any(t == a or t.endswith('/' + a) for a in anchors)]
    if not idx:
        return []
    flags = []
    for t in tokens[idx[-1] + 1:]:
        if t in COMMANDS:
            break
        if re.match(r'--[a-z]', t):
            flags.append(t.split('=', 1)[0])
    return flags


def _tokens(line):
    line = line.replace('`', ' ').replace('"', ' ').replace("'", ' ')
    return re.findall(r'[^\s,\[\]()|;&]+', line)


SCRIPT_ANCHORS = ('local.sh', 'multihost.sh', 'mpi.sh', 'recover.sh', 'slurm.sbatch')


def distsoftmax_flags_in_launch():
    """(file, flag) for every flag that launch/ passes to distsoftmax."""
    found = []
    for name in sorted(os.listdir(LAUNCH)):
        path = os.path.join(LAUNCH, name)
        with open(path) as f:
            text = f.read()
        if name.endswith(('.yaml', '.yml')):
            import yaml
            for doc in yaml.safe_load_all(text):
                for c in _containers(doc):
                    cmd = [str(t) for t in c.get('command', []) + c.get('args', [])]
                    if cmd[:2] == ['/bin/sh', '-c'] and len(cmd) > 2:
                        cmd = shlex.split(cmd[2])
                    found += [(name, f) for f in _flags_after(cmd, ('distsoftmax',))]
            # comments of the YAML hold recipes too
            text = '\n'.join(line.split('#', 1)[1] for line in text.splitlines() if '#' in line)
        for line in _logical_lines(text):
            toks = _tokens(line)
            found += [(name, f) for f in _flags_after(toks, ('distsoftmax',))]
            if not name.endswith('.sh'):  # README recipes that call a launch script
                found += [(name, f) for f in _flags_after(toks, SCRIPT_ANCHORS)
                          if f not in SCRIPT_FLAGS]
    return found


def _containers(doc):
    if isinstance(doc, dict):
        if 'containers' in doc:
            yield from doc['containers']
        for v in doc.values():
            yield from _containers(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _containers(v)


def test_distsoftmax_flags_exist():
    pytest.importorskip('yaml')
    known = _help_flags()
    assert {'--epochs', '--checkpoint-dir', '--resume', '--fp16-allreduce'} <= known
    used = distsoftmax_flags_in_launch()
    # the collection itself works: these are in the recipes
    assert {'--checkpoint-dir', '--resume', '--layout', '--fp16-allreduce'} <= {f for _, f in used}
    unknown = sorted({(n, f) for n, f in used if f not in known})
    assert not unknown, f'flags passed to distsoftmax that train --help does not list: {unknown}'


def test_every_flag_in_launch_is_known():
    """Any --flag anywhere in launch/ is distsoftmax's or a listed launcher's (catches typos)."""
    known = _help_flags() | LAUNCHER_FLAGS
    unknown = set()
    for name in sorted(os.listdir(LAUNCH)):
        with open(os.path.join(LAUNCH, name)) as f:
            for flag in re.findall(r'(?<![\w/-])--[a-z][a-z0-9-]*', f.read()):
                if flag not in known:
                    unknown.add((name, flag))
    assert not unknown, f'unknown flags (add launcher flags to LAUNCHER_FLAGS): {sorted(unknown)}'


# ------------------------------------------------------------- real launchers



@pytest.mark.launcher
@needs_horovodrun
@pytest.mark.parametrize('controller', ['gloo', 'mpi'])
def test_local_sh(tmp_path, controller):
    if controller == 'mpi' and not shutil.which('mpirun'):
        pytest.skip('mpirun not installed')
    metrics = tmp_path / 'm.jsonl'
    run([os.path.join(LAUNCH, 'local.sh'), *SMALL, '--epochs', '1', '--metrics', str(metrics)],
        NP=2, HOROVOD_CONTROLLER=controller)
    s = summary(metrics)
    assert (s['layout'], s['world_size'], s['epochs']) == ('horovod', 2, 1)
    assert s['replicas_identical']


@pytest.mark.launcher
@needs_horovodrun
def test_multihost_sh_with_a_hostfile_of_this_host(tmp_path):
    hosts = tmp_path / 'hosts'
    hosts.write_text('localhost slots=2\n')
    metrics = tmp_path / 'm.jsonl'
    run([os.path.join(LAUNCH, 'multihost.sh'), '--gloo', *SMALL, '--epochs', '1',
         '--metrics', str(metrics)], HOSTFILE=hosts, HOROVOD_GLOO_IFACE='lo')
    s = summary(metrics)
    assert (s['layout'], s['world_size']) == ('horovod', 2)


@pytest.mark.launcher
@needs_mpirun
def test_mpi_sh(tmp_path):
    metrics = tmp_path / 'm.jsonl'
    run([os.path.join(LAUNCH, 'mpi.sh'), *SMALL, '--epochs', '1', '--metrics', str(metrics)], NP=2)
    s = summary(metrics)
    assert (s['layout'], s['world_size'], s['epochs']) == ('mpi', 2, 1)


# ---------------------------------------------------------------- recovery

@pytest.mark.launcher
@needs_horovodrun
@pytest.mark.parametrize('controller', ['--gloo', '--mpi'])
def test_kill_9_of_one_rank_ends_horovodrun_fast_and_leaves_nothing(tmp_path, controller):
    pytest.importorskip('psutil')
    ckpt, tag = tmp_path / 'ckpt', uuid.uuid4().hex
    cmd = [os.path.join(BIN, 'horovodrun'), '-np', '2', controller, sys.executable, '-m',
           'distsoftmax', *SMALL, '--epochs', '3', '--checkpoint-dir', str(ckpt)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=launcher_env(DISTSOFTMAX_TEST_TAG=tag, DISTSOFTMAX_FAULT='sleep=0.02'),
                         start_new_session=True)
    try:
        deadline, victim = time.monotonic() + 120, None
        while saved_epoch(ckpt) < 1:  # then rank 1 is in epoch 2
            assert time.monotonic() < deadline and p.poll() is None, p.stdout.read()
            victim = victim or next((pid for pid, r in tagged_ranks(tag).items() if r == 1), None)
            time.sleep(0.005)
        assert victim is not None, 'no process of rank 1 found'
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f'horovodrun {controller} still runs 30 s after kill -9 of rank 1')
        print(f'horovodrun {controller} exited {time.monotonic() - killed_at:.2f} s after the kill')
        deadline = time.monotonic() + 5
        while tagged_ranks(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = tagged_ranks(tag)  # looked for before the clean-up below kills them
    finally:
        _kill_all(p, tag)
    assert p.returncode != 0, out
    assert saved_epoch(ckpt) in (1, 2), 'the run was not stopped mid-way'
    assert not left, f'rank processes left behind: {left}'


@pytest.mark.launcher
@needs_horovodrun
def test_recover_sh_resumes_after_a_killed_rank(tmp_path):
    pytest.importorskip('psutil')
    flags = [*SMALL, '--epochs', '3', '--batch-size', '256']
    # the reference: the same run, uninterrupted
    ref = tmp_path / 'ref'
    run([os.path.join(BIN, 'horovodrun'), '-np', '2', '--gloo', sys.executable, '-m',
         'distsoftmax', *flags, '--checkpoint-dir', str(ref)])

    ckpt = tmp_path / 'ckpt'
    tag = uuid.uuid4().hex
    cmd = [os.path.join(LAUNCH, 'recover.sh'), *flags, '--checkpoint-dir', str(ckpt)]
    log = []  # (monotonic time, line)
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=launcher_env(NP=2, HOROVOD_CONTROLLER='gloo', BACKOFF=1,
                                          MAX_RESTARTS=2, DISTSOFTMAX_TEST_TAG=tag,
                                          DISTSOFTMAX_FAULT='sleep=0.02'),
                         start_new_session=True)
    reader = threading.Thread(target=lambda: log.extend((time.monotonic(), line) for line in p.stdout),
                              daemon=True)
    reader.start()
    try:
        # kill rank 1 as soon as epoch 1 is saved (the dry run's ranks have gone by then)
        deadline = time.monotonic() + 120
        while saved_epoch(ckpt) < 1:
            assert time.monotonic() < deadline and p.poll() is None, ''.join(line for _, line in log)
            time.sleep(0.005)
        victim = next((pid for pid, r in tagged_ranks(tag).items() if r == 1), None)
        assert victim is not None, 'no process of rank 1 found'
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        assert saved_epoch(ckpt) < 3, 'the run finished before the kill: slow it down'
        p.wait(timeout=180)
    finally:
        _kill_all(p, tag)
    reader.join(timeout=10)
    out = ''.join(line for _, line in log)
    assert p.returncode == 0, out
    failed = [t for t, line in log if 'attempt 1 failed with exit' in line]
    assert failed, out
    assert re.search(r'attempt 1 failed with exit [1-9]', out), out
    print(f'recover.sh: attempt 1 failed {failed[0] - killed_at:.2f} s after the kill')
    assert failed[0] - killed_at < 30, f'horovodrun took {failed[0] - killed_at:.1f} s to fail'
    assert 'attempt 2 succeeded' in out, out
    assert saved_epoch(ckpt) == 3
    # bit-equal to the uninterrupted run
    got, want = load_params(ckpt / 'model.params'), load_params(ref / 'model.params')
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), k
    # nothing left behind
    time.sleep(0.5)
    assert not tagged_ranks(tag), f'rank processes left behind: {tagged_ranks(tag)}'


# ------------------------------------------------------- the MPIJob's schema

# kubeflow/mpi-operator v0.8.2's MPIJob CRD, kept beside the repository (shared/)
MPIJOB_CRD = os.path.join(os.path.dirname(ROOT), 'shared', 'k8s', 'mpijobs.kubeflow.org.crd.yaml')


def _mpijob_schema():
    yaml = pytest.importorskip('yaml')
    pytest.importorskip('jsonschema')
    if not os.path.isfile(MPIJOB_CRD):
        pytest.skip(f'no MPIJob CRD at {MPIJOB_CRD} (shared/ beside the repository)')
    with open(MPIJOB_CRD) as f:
        crd = yaml.safe_load(f)
    version = next(v for v in crd['spec']['versions'] if v['name'] == 'v2beta1')
    with open(os.path.join(LAUNCH, 'mpijob.yaml')) as f:
        job = next(d for d in yaml.safe_load_all(f) if d and d['kind'] == 'MPIJob')
    return version['schema']['openAPIV3Schema'], job


def strict_schema(schema):
    """The schema with unknown fields rejected, as the API server's strict field
    validation does: every object with properties and without
    x-kubernetes-preserve-unknown-fields or additionalProperties takes no others."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if ('properties' in out and 'additionalProperties' not in out
                and not out.get('x-kubernetes-preserve-unknown-fields')):
            out['additionalProperties'] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


def _errors(schema, doc):
    import jsonschema
    return sorted(f'{"/".join(map(str, e.absolute_path))}: {e.message}'
                  for e in jsonschema.Draft7Validator(schema).iter_errors(doc))


def test_mpijob_is_valid_against_the_operators_crd():
    schema, job = _mpijob_schema()
    assert not _errors(schema, job)
    strict = strict_schema(schema)
    assert not _errors(strict, job), _errors(strict, job)
    # strict really rejects unknown fields: a typo in the launcher's container
    import copy
    bad = copy.deepcopy(job)
    bad['spec']['mpiReplicaSpecs']['Launcher']['template']['spec']['containers'][0]['comand'] = ['x']
    assert not _errors(schema, bad) and any('comand' in e for e in _errors(strict, bad))


def test_bootstrap_help_lists_its_commands():
    p = subprocess.run([os.path.join(ROOT, 'bootstrap.sh'), '--help'], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    for word in ('setup', 'run', 'test'):
        assert f'./bootstrap.sh {word}' in p.stdout
