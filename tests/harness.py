"""What the tests and bench/ share: launcher command lines, IDX data sets, and
the tests' helpers that run the CLI and the launchers.

bench/ imports it too (it puts tests/ on sys.path) before the package it
measures is importable, so nothing here imports distsoftmax at the top.

    horovodrun_argv(2, sys.executable, ['-m', 'distsoftmax', '--epochs', '1'])
    run_cli('--synthetic', '600'), horovodrun(2, ...), mpirun(2, ...): run them (tests)
    mpirun_argv(2, sys.executable, ['-m', 'distsoftmax', '--layout', 'mpi'])
    torchrun_argv(2, '/path/to/torch/python', ['script.py', 'DATA_DIR'])
    write_idx_dir(tmp_path, data.synthetic(seed=3, n_train=600, n_test=100))
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # the venv's bin: horovodrun lives beside python
FAULTS = os.path.join(ROOT, 'tests', 'faults')   # a sitecustomize that injects DISTSOFTMAX_FAULT
TUNED = ('OMP_NUM_THREADS', 'HOROVOD_CYCLE_TIME', 'OMPI_MCA_mpi_yield_when_idle')

# what mpirun forwards to every rank by default (-x NAME): one thread a rank, the
# venv first on PATH, unbuffered output
MPI_ENV_NAMES = ('OMP_NUM_THREADS', 'PATH', 'PYTHONUNBUFFERED')
# Open MPI refuses root without this, and more ranks than cores without that
MPI_ROOT_ARGS = ('--allow-run-as-root', '--oversubscribe')


def launch_env(base=None, **extra):
    """The environment a launched run gets: the venv's bin first on PATH, one
    OpenMP thread a process, unbuffered output, no fault injection left over."""
    e = dict(os.environ if base is None else base)
    e.update(PATH=BIN + os.pathsep + e.get('PATH', ''), OMP_NUM_THREADS='1',
             PYTHONUNBUFFERED='1')
    e.pop('DISTSOFTMAX_FAULT', None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def horovodrun_argv(np_, python, args, transport='--gloo', prefix=(), bin_dir=None):
    """horovodrun -np N [TRANSPORT] [PREFIX...] PYTHON ARGS...

    transport: '--gloo', '--mpi' (root and oversubscription allowed), or None for
    horovodrun's own choice (MPI when Horovod is built with it; it then passes
    --allow-run-as-root itself). prefix: argv run in front of python on every
    rank, e.g. GNU time."""
    cmd = [os.path.join(bin_dir or BIN, 'horovodrun'), '-np', str(np_)]
    if transport:
        cmd.append(transport)
    if transport == '--mpi':
        cmd.append('--mpi-args=' + ' '.join(MPI_ROOT_ARGS))
    return cmd + [*prefix, str(python), *map(str, args)]


def mpirun_argv(np_, python, args, env_names=MPI_ENV_NAMES, prefix=()):
    """mpirun --allow-run-as-root --oversubscribe -np N -x NAME... [PREFIX...] PYTHON ARGS...

    Plain Open MPI, no horovodrun: distsoftmax's --layout auto picks Horovod
    there if it is built, else mpi4py."""
    cmd = ['mpirun', *MPI_ROOT_ARGS, '-np', str(np_)]
    for name in env_names:
        cmd += ['-x', name]
    return cmd + [*prefix, str(python), *map(str, args)]


def torchrun_argv(nproc, python, args, prefix=()):
    """PYTHON -m torch.distributed.run --nproc_per_node=N ... ARGS (one host, gloo
    or whatever the script picks). With a prefix, each rank runs PREFIX PYTHON
    ARGS (--no-python), so a wrapper such as GNU time sees that rank alone."""
    cmd = [str(python), '-m', 'torch.distributed.run', '--standalone',
           f'--nproc_per_node={nproc}']
    if prefix:
        return cmd + ['--no-python', *prefix, str(python), *map(str, args)]
    return cmd + [*map(str, args)]


IDX_NAMES = {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
             't10k': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}


def write_idx_dir(path, dataset):
    """Write DATASET (a distsoftmax.data.Dataset, e.g. data.synthetic(...)) as the
    four Fashion-MNIST IDX gz files in PATH, which is created if missing. What
    only reads a directory (the CLI, the anchors) then trains on those samples.
    Their SHA-256 sums are not the real files': pass --no-verify."""
    from distsoftmax import idx  # late: bench imports it from its snapshot copy

    os.makedirs(path, exist_ok=True)
    for split, images, labels in (('train', dataset.train_images, dataset.train_labels),
                                  ('t10k', dataset.test_images, dataset.test_labels)):
        image_file, label_file = IDX_NAMES[split]
        idx.write_idx(os.path.join(path, image_file), images, idx.IMAGES_MAGIC)
        idx.write_idx(os.path.join(path, label_file), labels, idx.LABELS_MAGIC)
    return path


def horovod_available():
    """Whether Horovod's MXNet binding imports here."""
    try:
        import horovod.mxnet  # noqa: F401
        return True
    except Exception:
        return False


def env(**extra):
    """harness.launch_env without the launcher variables of the test's own process;
    with DISTSOFTMAX_FAULT, the fault injector on PYTHONPATH."""
    from distsoftmax import launchers
    e = launch_env()
    for key in launchers.VARIABLES:
        e.pop(key, None)
    e.update({k: str(v) for k, v in extra.items()})
    if 'DISTSOFTMAX_FAULT' in extra:
        e['PYTHONPATH'] = os.pathsep.join(filter(None, [FAULTS, e.get('PYTHONPATH')]))
    return e


def skip_unless_ready(reason, required_by):
    """Skip for reason (a str, or None when ready); fail instead where the
    environment variable required_by is 'require' (CI, where the set-up ran)."""
    import pytest
    if reason:
        if os.environ.get(required_by) == 'require':
            pytest.fail(f'{required_by}=require, but: {reason}')
        pytest.skip(reason)


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
    cmd = horovodrun_argv(np_, sys.executable, ['-m', 'distsoftmax', *args], transport)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})))


def mpirun(np_, *args, timeout=300, extra_env=None):
    cmd = mpirun_argv(np_, sys.executable, ['-m', 'distsoftmax', *args])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})))




def load_params(path):
    from mxnet import nd
    return {k: v.asnumpy() for k, v in nd.load(str(path)).items()}


def __getattr__(name):
    """REAL (Debian's Fashion-MNIST directory, or None), needs_real_data and
    needs_horovod (pytest skip marks): computed when a test module asks, since
    bench/ imports this module before the package it measures is on the path."""
    import pytest
    if name == 'REAL':
        from distsoftmax import data
        return data.DEBIAN_DIR if all(os.path.isfile(os.path.join(data.DEBIAN_DIR, f))
                                      for f in data.FILES) else None
    if name == 'needs_real_data':
        return pytest.mark.skipif(__getattr__('REAL') is None, reason='dataset-fashion-mnist not installed')
    if name == 'needs_horovod':
        return pytest.mark.skipif(not horovod_available(),
                                  reason='Horovod with MXNet not built (./bootstrap.sh setup builds it)')
    raise AttributeError(name)


def same(a, b):
    assert a.keys() == b.keys()
    return all(np.array_equal(a[k], b[k]) for k in a)


def tagged_ranks(tag):
    """{pid: rank} of the distsoftmax processes still running whose environment
    holds DISTSOFTMAX_TEST_TAG=tag (rank -1 where no launcher said)."""
    import psutil
    from distsoftmax import launchers
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


# -- a job under a launcher, watched from outside (tests/test_failures.py, test_watchdog.py)
TAGGED = re.compile(r'^\[\d+(,\d+)?\]<std(out|err)>:')
# what horovodrun itself raises when a worker exits non-zero: the launcher's, not ours
HOROVODRUN_SAYS = ('RuntimeError: Horovod detected that one or more processes exited with non-zero status',
                   'RuntimeError: mpirun failed with exit code')


def command(how, np_, args):
    """argv of a job: how is 'horovodrun-gloo', 'horovodrun-mpi', 'mpirun' (the mpi
    layout, mpi4py) or 'mpirun-horovod' (plain mpirun, Horovod's workers)."""
    args = ['-m', 'distsoftmax', *map(str, args)]
    if how.startswith('mpirun'):
        names = MPI_ENV_NAMES + ('PYTHONPATH', 'DISTSOFTMAX_FAULT', 'DISTSOFTMAX_TEST_TAG')
        layout = 'horovod' if how == 'mpirun-horovod' else 'mpi'
        return mpirun_argv(np_, sys.executable, args + ([] if '--layout' in args else ['--layout', layout]),
                           env_names=names)
    return horovodrun_argv(np_, sys.executable, args, '--' + how.split('-')[1])


def start(how, np_, args, **extra):
    """The job of command(), running; its processes carry DISTSOFTMAX_TEST_TAG=p.tag."""
    import uuid
    tag = uuid.uuid4().hex
    p = subprocess.Popen(command(how, np_, args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env(DISTSOFTMAX_TEST_TAG=tag, **extra), start_new_session=True)
    p.tag = tag
    return p


def finish(p, within=20):
    """The job's output once it ends by itself within `within` s; then nothing of it may run."""
    import pytest
    t0 = time.monotonic()
    try:
        out, _ = p.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f'the job still ran {within} s later:\n{p.communicate()[0][-3000:]}')
    finally:
        deadline = time.monotonic() + 5
        while tagged_ranks(p.tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = tagged_ranks(p.tag)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f'processes left behind: {left}\n{out[-3000:]}'
    print(f'ended {time.monotonic() - t0:.1f} s after the wait began')
    return out


def no_traceback_of_ours(out):
    ours = '\n'.join(line for line in out.splitlines() if TAGGED.match(line) or 'Traceback' not in out)
    assert 'Traceback' not in ours and 'distsoftmax/' not in out, out[-3000:]
    if 'Traceback' in out:   # horovodrun's own, for a worker that exited non-zero
        assert any(s in out for s in HOROVODRUN_SAYS), out[-3000:]
        assert not any(TAGGED.match(line) and 'Traceback' in line for line in out.splitlines()), out
