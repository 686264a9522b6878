"""What a result was measured on: the CPU, the cores, the versions, the code."""
import datetime
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from bench import configs as C
from bench import native
from bench.measure import PY, ROOT


def code_digest(root=ROOT):
    """SHA-256 over distsoftmax/*.py, to name the version measured."""
    h = hashlib.sha256()
    for f in sorted((Path(root) / 'distsoftmax').glob('*.py')):
        h.update(f.name.encode() + b'\0' + f.read_bytes())
    return h.hexdigest()[:12]


def horovod_controller():
    """What plain horovodrun uses: MPI when Horovod is built with it, else Gloo."""
    try:
        r = subprocess.run([str(Path(PY).parent / 'horovodrun'), '--check-build'],
                           capture_output=True, text=True)
    except OSError:
        return 'horovodrun not found'
    controllers = r.stdout.partition('Available Controllers:')[2].partition('Available Tensor')[0]
    return 'MPI' if '[X] MPI' in controllers else 'Gloo' if '[X] Gloo' in controllers else 'unknown'


def cpu_model():
    """/proc/cpuinfo's model name (the first core's)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return 'not installed'


def torch_version(torch_python):
    if not torch_python:
        return None
    r = subprocess.run([torch_python, '-c', 'import torch; print(torch.__version__)'],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else 'unknown (import failed)'


def git_state():
    """The commit, and which package files differ from it."""
    def git(*cmd):
        return subprocess.run(['git', *cmd], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()
    changed = [line[3:] for line in git('status', '--porcelain', '--', 'distsoftmax').splitlines()]
    commit = git('rev-parse', '--short', 'HEAD') or 'unknown'
    return commit + (' with uncommitted changes in ' + ', '.join(changed) if changed else '')


def basics(package):
    """The CPU, the core count, mxnet's version, and which distsoftmax was measured."""
    return {'cpu': cpu_model(), 'cores': C.CORES, 'python': platform.python_version(),
            'mxnet': version('mxnet'), 'git': git_state(), 'code_digest': code_digest(package),
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}


def mxnet_features():
    """The build features the pip mxnet reports (INT64_TENSOR_SIZE: large tensors)."""
    r = subprocess.run([PY, '-c', 'import mxnet; print(" ".join(f.name for f in '
                        'mxnet.runtime.Features().values() if f.enabled))'],
                       capture_output=True, text=True)
    return r.stdout.split() if r.returncode == 0 else None


def environment():
    """What in the environment changes a kernel: OPENBLAS_*, MXNET_*, OMP_*."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(('OPENBLAS', 'MXNET_', 'OMP_'))}


def machine(package, torch_python=None):
    """basics(), and every library the bench's configurations use."""
    flags = native.cpu_flags()
    return {**basics(package), 'horovod': version('horovod'), 'numpy': version('numpy'),
            'mpi4py': version('mpi4py'), 'torch': torch_version(torch_python),
            'torch_python': torch_python, 'horovodrun_controller': horovod_controller(),
            'mxnet_features': mxnet_features(), 'environment': environment(),
            'cpu_flags': sorted(f for f in flags if f in ('avx2', 'fma', 'avx512f', 'avx512bw',
                                                          'avx512vl', 'avx512_bf16'))}
