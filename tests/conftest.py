import os
import subprocess
import sys

import numpy as np
import pytest

import harness
from distsoftmax import data, launchers

ROOT, BIN = harness.ROOT, harness.BIN
FAULTS = os.path.join(ROOT, 'tests', 'faults')   # a sitecustomize that injects DISTSOFTMAX_FAULT
TUNED = ('OMP_NUM_THREADS', 'HOROVOD_CYCLE_TIME', 'OMPI_MCA_mpi_yield_when_idle')


def env(**extra):
    """harness.launch_env without the launcher variables of the test's own process;
    with DISTSOFTMAX_FAULT, the fault injector on PYTHONPATH."""
    e = harness.launch_env()
    for key in launchers.VARIABLES:
        e.pop(key, None)
    e.update({k: str(v) for k, v in extra.items()})
    if 'DISTSOFTMAX_FAULT' in extra:
        e['PYTHONPATH'] = os.pathsep.join(filter(None, [FAULTS, e.get('PYTHONPATH')]))
    return e


def run_cli(*args, timeout=300, extra_env=None, **kw):
    """python -m distsoftmax ARGS, as a user runs it."""
    return subprocess.run([sys.executable, '-m', 'distsoftmax', *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})), **kw)


def probe(code, **set_env):
    """Run CODE in a fresh interpreter whose environment lacks the tuned variables."""
    e = env(**set_env)
    for key in TUNED:
        if key not in set_env:
            e.pop(key, None)
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=e, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def horovodrun(np_, *args, transport='--gloo', timeout=300, extra_env=None):
    cmd = harness.horovodrun_argv(np_, sys.executable, ['-m', 'distsoftmax', *args], transport)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})))


def mpirun(np_, *args, timeout=300, extra_env=None):
    cmd = harness.mpirun_argv(np_, sys.executable, ['-m', 'distsoftmax', *args])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})))


horovod_available = harness.horovod_available
needs_horovod = pytest.mark.skipif(not horovod_available(),
                                   reason='Horovod with MXNet not built (./bootstrap.sh setup builds it)')


def load_params(path):
    from mxnet import nd
    return {k: v.asnumpy() for k, v in nd.load(str(path)).items()}


@pytest.fixture
def idx_dir(tmp_path):
    """A small, valid Fashion-MNIST-shaped data set written as IDX gz files."""
    harness.write_idx_dir(tmp_path, data.synthetic(seed=3, n_train=600, n_test=100))
    return tmp_path


REAL = data.DEBIAN_DIR if all(os.path.isfile(os.path.join(data.DEBIAN_DIR, f))
                              for f in data.FILES) else None
needs_real_data = pytest.mark.skipif(REAL is None, reason='dataset-fashion-mnist not installed')


def same(a, b):
    assert a.keys() == b.keys()
    return all(np.array_equal(a[k], b[k]) for k in a)


def tagged_ranks(tag):
    """{pid: rank} of the distsoftmax processes still running whose environment
    holds DISTSOFTMAX_TEST_TAG=tag (rank -1 where no launcher said)."""
    import psutil
    found = {}
    for proc in psutil.process_iter(['pid', 'cmdline']):
        if 'distsoftmax' not in (proc.info['cmdline'] or []):
            continue
        try:
            e = proc.environ()
        except (psutil.Error, OSError):
            continue
        if e.get('DISTSOFTMAX_TEST_TAG') == tag:
            found[proc.info['pid']] = launchers.rank(e) if launchers.detect(e) else -1
    return found


def saved_epoch(ckpt):
    """The epoch of the checkpoint in ckpt, 0 if none."""
    import json
    try:
        with open(os.path.join(ckpt, 'state.json')) as f:
            return json.load(f)['epoch']
    except (OSError, ValueError, KeyError):
        return 0
