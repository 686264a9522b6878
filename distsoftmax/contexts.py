"""--devices as MXNet contexts."""
import mxnet as mx

from . import environment
from .errors import UsageError


def num_gpus():
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:  # a CPU-only build
        return 0


def one_context(devices, local_rank):
    """One device per process: Horovod reduces only a process's first context."""
    if devices.several:
        raise UsageError(f'--devices {devices}: horovod and mpi use one device per process '
                         '(several devices per Horovod process are not reduced); '
                         'use --devices cpu or gpu and start one process per device')
    if devices.kind == 'cpu':
        return [mx.cpu()]
    gpus = num_gpus()
    if devices.kind == 'gpu' and gpus == 0:
        raise UsageError(f'--devices {devices}: no GPU found ({_which_build()}); use --devices cpu')
    if gpus:
        _kernels_for([local_rank % gpus])
    return [mx.gpu(local_rank % gpus)] if gpus else [mx.cpu()]


def contexts_of(devices):
    """The contexts of one process for --devices."""
    if devices.kind == 'cpu':
        return [mx.cpu(i) for i in range(devices.count)]
    have = num_gpus()
    if devices.kind is None:
        return [mx.gpu(0)] if have else [mx.cpu()]
    ids = list(range(have)) if devices.gpu_ids is None else list(devices.gpu_ids)
    if not ids or have == 0:
        raise UsageError(f'--devices {devices}: no GPU found ({_which_build()}); use --devices cpu')
    bad = [i for i in ids if i >= have]
    if bad:
        raise UsageError(f'--devices {devices}: no GPU {bad[0]} (this machine has {have})')
    _kernels_for(ids)
    return [mx.gpu(i) for i in ids]


def _which_build():
    build = environment.mxnet_build()
    if not build['cuda']:
        return (f"{build['distribution']} {build['version']} is a CPU build: install mxnet-cu112==1.9.1 "
                'for GPUs')
    return f"{build['distribution']} {build['version']} sees 0 GPUs"


def _kernels_for(ids):
    """The installed mxnet's kernels run on these GPUs (environment.check_gpu_arch)."""
    environment.check_gpu_arch([g for g in environment.gpus() if g['index'] in ids], environment.mxnet_build())
