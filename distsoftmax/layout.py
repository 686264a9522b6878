"""Where the work runs: the one module that knows about processes and devices.

Every layout offers the same small interface, and the recipe and the loop use
nothing else: rank, size, local_rank, contexts, is_main, split, allreduce,
broadcast, broadcast_value, barrier, trainer, agree, abort, close.
  Local    one process, one context (cpu or gpu:K)
  Devices  one process, several contexts; the Trainer's kvstore sums the gradients
  Horovod  one context per process; hvd.DistributedTrainer allreduces them
  Mpi      one context per process; mpi4py allreduces them (MpiKVStore)
"""
import hashlib
import os

import numpy as np
from mxnet import gluon, nd

from . import launchers, startup
from .contexts import contexts_of, num_gpus, one_context
from .mpi_kvstore import MpiKVStore
from .errors import Agreed, LayoutError, UsageError, UserError

TEXT_BYTES = 4096    # an agreed error or a broadcast text travels as this many bytes
started = []         # the layout of this process once it has joined a job; the CLI's failure path reads it


class Layout:
    """What every layout shares; rank 0 of the job is the main one."""
    name = ''
    rank, size, local_rank = 0, 1, 0
    contexts = ()

    @property
    def is_main(self):
        return self.rank == 0

    def split(self, array, batch_axis=0):
        """One equal part per context, as gluon.utils.split_and_load cuts it."""
        return gluon.utils.split_and_load(array, self.contexts, batch_axis=batch_axis)

    def allreduce(self, x):
        """The float64 numpy array x summed over workers."""
        return np.asarray(x, dtype=np.float64)

    def broadcast(self, params):
        """Parameters from rank 0, in place."""

    def broadcast_value(self, x, root=0):
        """A float64 numpy array from rank root."""
        return np.asarray(x, dtype=np.float64)

    def barrier(self):
        self.allreduce(np.zeros(1))

    def broadcast_text(self, text, root=0, code=0):
        """A str (up to TEXT_BYTES of UTF-8) and an int from rank root: (text, code)."""
        sent = np.zeros(TEXT_BYTES + 1)
        if self.rank == root:
            raw = text.encode()[:TEXT_BYTES]
            sent[:len(raw)] = np.frombuffer(raw, np.uint8)
            sent[-1] = code
        got = self.broadcast_value(sent, root=root)
        return got[:-1].astype(np.uint8).tobytes().rstrip(b'\0').decode(errors='replace'), int(got[-1])

    def trainer(self, params, lr, fp16_allreduce=False):
        """SGD whose step(n) sums the gradients of every context and worker and divides by n."""
        if fp16_allreduce:
            raise UsageError('--fp16-allreduce needs the horovod layout')
        # 'device': sums the per-context gradients; none is made for one context
        return gluon.Trainer(params, 'sgd', {'learning_rate': lr}, kvstore='device')

    def agree(self, check):
        """check() on every rank; if it raised a UserError on any rank, every rank
        raises the first failing rank's error (errors.Agreed, its exit code), so
        that every rank exits alike and none waits on a peer that has left."""
        try:
            result, error = check(), None
        except UserError as e:
            result, error = None, e
        return self._agreed(result, error)

    def _agreed(self, result, error):
        failed = np.zeros(self.size)
        failed[self.rank] = error is not None
        failed = self.allreduce(failed)
        if not failed.any():
            return result
        first = int(np.flatnonzero(failed)[0])
        text, code = (str(error), error.exit_code) if error is not None else ('', 0)
        if self.size > 1:
            text, code = self.broadcast_text(text, root=first, code=code)
        raise Agreed(text, code) from error

    def replicas_identical(self, params):
        """Every context of every rank holds bit-identical parameters (digests compared)."""
        digests = []
        for p in params.values():
            per_ctx = {hashlib.sha256(d.asnumpy().tobytes()).digest()[:4] for d in p.list_data()}
            if len(per_ctx) > 1:
                return False
            digests.append(int.from_bytes(per_ctx.pop(), 'big'))
        mine = np.array(digests, dtype=np.float64)
        return bool(np.all(self.allreduce(mine) == mine * self.size))

    def peer_failed(self, error):
        """Whether error says that another rank failed or left."""
        return False

    def abort(self, code):
        """End every rank of the job now (a failure on this rank alone)."""
        startup.exit_now(code)

    def close(self):
        """Leave the job; every rank calls it."""

    def describe(self):
        devices = ', '.join(str(c) for c in self.contexts)
        return f'{self.name}, {self.size} worker(s) x {len(self.contexts)} device(s) ({devices})'


class Local(Layout):
    name = 'local'

    def __init__(self, contexts):
        self.contexts = contexts


class Devices(Local):
    name = 'devices'


class Horovod(Layout):
    name = 'horovod'

    def __init__(self, devices):
        try:
            import horovod.mxnet as hvd
        except Exception as e:
            raise LayoutError(f'--layout horovod: Horovod with MXNet is not available ({e}); '
                              'run ./bootstrap.sh setup, or use --layout mpi') from None
        _set_defaults_for(devices, horovod=True)
        hvd.init()
        started.append(self)
        self.hvd = hvd
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        self._calls = 0
        self.contexts = self.agree(lambda: one_context(devices, self.local_rank))

    def _name(self, what):
        self._calls += 1
        return f'distsoftmax.{what}.{self._calls}'

    def allreduce(self, x):
        t = nd.array(np.asarray(x, dtype=np.float64), dtype='float64')
        return self.hvd.allreduce(t, op=self.hvd.Sum, name=self._name('allreduce')).asnumpy()

    def broadcast(self, params):
        self.hvd.broadcast_parameters(params, root_rank=0)

    def broadcast_value(self, x, root=0):
        t = nd.array(np.asarray(x, dtype=np.float64), dtype='float64')
        return self.hvd.broadcast(t, root_rank=root, name=self._name('bcast')).asnumpy()

    def trainer(self, params, lr, fp16_allreduce=False):
        compression = self.hvd.Compression.fp16 if fp16_allreduce else self.hvd.Compression.none
        # DistributedTrainer averages: it divides rescale_grad by the world size.
        # Starting it at the world size makes step(n) divide the sum by n, as elsewhere.
        return self.hvd.DistributedTrainer(params, 'sgd', {'learning_rate': lr, 'rescale_grad': self.size},
                                           compression=compression)

    def peer_failed(self, error):
        text = str(error)
        return 'Horovod has been shut down' in text or 'HorovodInternalError' in text or \
            type(error).__name__ == 'HorovodInternalError'

    def close(self):
        self.hvd.shutdown()


class Mpi(Layout):
    name = 'mpi'

    def __init__(self, devices):
        _set_defaults_for(devices)
        try:
            from mpi4py import MPI
        except Exception as e:
            raise LayoutError(f'--layout mpi: mpi4py is not available ({e}); '
                              'pip install mpi4py, or run ./bootstrap.sh setup') from None
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        started.append(self)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        self.contexts = self.agree(lambda: one_context(devices, self.local_rank))

    def allreduce(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty_like(x)
        self.comm.Allreduce(x, out, op=self.MPI.SUM)
        return out

    def broadcast(self, params):
        for _, p in sorted(params.items()):
            a = p.data().asnumpy()
            self.comm.Bcast(a, root=0)
            p.set_data(nd.array(a, dtype=a.dtype))

    def broadcast_value(self, x, root=0):
        x = np.array(x, dtype=np.float64)
        self.comm.Bcast(x, root=root)
        return x

    def trainer(self, params, lr, fp16_allreduce=False):
        if fp16_allreduce:
            raise UsageError('--fp16-allreduce needs the horovod layout')
        return gluon.Trainer(params, 'sgd', {'learning_rate': lr}, kvstore=MpiKVStore(self.comm))

    def abort(self, code):
        self.comm.Abort(code)  # every rank of the job ends; mpirun reports it

    def close(self):
        self.MPI.Finalize()  # here, since run() skips the interpreter teardown where mpi4py would


def _set_defaults_for(devices, horovod=False):
    """Defaults read when MPI or Horovod start; a value the user set wins (README:
    "Defaults"; the measurements are in bench/)."""
    on_cpu = devices.kind == 'cpu' or (devices.kind is None and num_gpus() == 0)
    if on_cpu:
        # a rank that busy-polls for its peers starves MXNet's engine threads on
        # shared cores; Open MPI yields by itself only when ranks outnumber cores
        os.environ.setdefault('OMPI_MCA_mpi_yield_when_idle', '1')
    if horovod and os.environ.get('OMPI_MCA_btl') == '^openib':
        # horovodrun's own "-mca btl ^openib" replaces Open MPI's default exclusions
        # and turns the libfabric transport back on, slow to start and to stop
        os.environ['OMPI_MCA_btl'] = '^openib,ofi'
    if horovod and on_cpu and launchers.one_host():
        # a step takes 1-2 ms on CPU: Horovod's 1 ms cycle would add up to a cycle a step
        os.environ.setdefault('HOROVOD_CYCLE_TIME', '0.1')


def horovod_built():
    try:
        import horovod.mxnet  # noqa: F401
        return True
    except Exception:  # ImportError, or a build without MXNet support
        return False


def choose_layout(layout, devices):
    """auto: horovodrun -> horovod; another launcher with several ranks -> horovod
    if it is built, else mpi; otherwise devices for several devices, else local.
    local or devices under a launcher of several ranks is refused: each rank
    would train alone and write the same files."""
    ranks = launchers.world_size()
    if ranks > 1 and launchers.detect().name == 'torchrun':
        raise UsageError(f'torchrun started {ranks} ranks, which cannot join one job here (Horovod and '
                         'MPI rendezvous through their own launchers): use mpirun -np N or horovodrun -np N')
    if layout in ('local', 'devices') and ranks > 1:
        raise UsageError(f'--layout {layout} under a launcher of {ranks} ranks would train {ranks} '
                         'separate models: use --layout auto, horovod or mpi')
    if layout != 'auto':
        return layout
    if launchers.by_horovodrun():
        return 'horovod'
    if ranks > 1:
        return 'horovod' if horovod_built() else 'mpi'
    return 'devices' if devices.several else 'local'


def start(layout, devices):
    """The layout of this process: joins the job (hvd.init, MPI_Init) where there is one."""
    chosen = choose_layout(layout, devices)
    if chosen == 'horovod':
        return Horovod(devices)
    if chosen == 'mpi':
        return Mpi(devices)
    contexts = contexts_of(devices)
    if chosen == 'local' and len(contexts) > 1:
        raise UsageError(f'--devices {devices}: the local layout uses one device; use --layout devices')
    return (Devices if chosen == 'devices' else Local)(contexts)
