import os
import subprocess
import sys

import numpy as np
import pytest

from distsoftmax import data, idx, launchers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
FAULTS = os.path.join(ROOT, 'tests', 'faults')   # a sitecustomize that injects DISTSOFTMAX_FAULT
TUNED = ('OMP_NUM_THREADS', 'HOROVOD_CYCLE_TIME', 'OMPI_MCA_mpi_yield_when_idle')


def env(**extra):
    """The environment a launched run gets: the venv first, one thread a rank, no
    launcher's variables of the test's own process; with DISTSOFTMAX_FAULT, the
    fault injector on PYTHONPATH."""
    e = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
             OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    for key in launchers.VARIABLES + ('DISTSOFTMAX_FAULT',):
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
    cmd = [os.path.join(BIN, 'horovodrun'), '-np', str(np_), transport]
    if transport == '--mpi':
        cmd += ['--mpi-args=--oversubscribe --allow-run-as-root']
    cmd += [sys.executable, '-m', 'distsoftmax', *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})))


def mpirun(np_, *args, timeout=300, extra_env=None):
    cmd = ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', str(np_),
           '-x', 'OMP_NUM_THREADS', '-x', 'PATH', '-x', 'PYTHONUNBUFFERED',
           sys.executable, '-m', 'distsoftmax', *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})))


def horovod_available():
    try:
        import horovod.mxnet  # noqa: F401
        return True
    except Exception:
        return False


needs_horovod = pytest.mark.skipif(not horovod_available(),
                                   reason='Horovod with MXNet not built (./bootstrap.sh setup builds it)')


def load_params(path):
    from mxnet import nd
    return {k: v.asnumpy() for k, v in nd.load(str(path)).items()}


@pytest.fixture
def idx_dir(tmp_path):
    """A small, valid Fashion-MNIST-shaped data set written as IDX gz files."""
    d = data.synthetic(seed=3, n_train=600, n_test=100)
    for split, images, labels in (('train', d.train_images, d.train_labels),
                                  ('t10k', d.test_images, d.test_labels)):
        idx.write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images, idx.IMAGES_MAGIC)
        idx.write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels, idx.LABELS_MAGIC)
    return tmp_path


REAL = data.DEBIAN_DIR if all(os.path.isfile(os.path.join(data.DEBIAN_DIR, f))
                              for f in data.FILES) else None
needs_real_data = pytest.mark.skipif(REAL is None, reason='dataset-fashion-mnist not installed')


def same(a, b):
    assert a.keys() == b.keys()
    return all(np.array_equal(a[k], b[k]) for k in a)
