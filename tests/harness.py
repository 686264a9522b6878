"""What the tests and bench/ share: launcher command lines and IDX data sets.

Plain functions that build argv lists and write files; nothing here runs a
process. tests/conftest.py and bench/ import it (bench puts tests/ on sys.path).

    horovodrun_argv(2, sys.executable, ['-m', 'distsoftmax', '--epochs', '1'])
    mpirun_argv(2, sys.executable, ['-m', 'distsoftmax', '--layout', 'mpi'])
    torchrun_argv(2, '/path/to/torch/python', ['script.py', 'DATA_DIR'])
    write_idx_dir(tmp_path, data.synthetic(seed=3, n_train=600, n_test=100))
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # the venv's bin: horovodrun lives beside python

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
