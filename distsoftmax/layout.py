"""Where the work runs: the one module that knows about processes and devices.

Every layout offers the same small interface, and the training loop uses
nothing else: rank, size, contexts, is_main, split, allreduce, broadcast,
trainer. Layouts:
  local    one process, one context (cpu or gpu:K)
  devices  one process, several contexts; the Trainer's kvstore sums grads
  horovod  one context per process; hvd.DistributedTrainer sums grads
  mpi      one context per process; one mpi4py Allreduce of the flat grads
"""
import os

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from .errors import LayoutError, UserError

BACKENDS = ('auto', 'local', 'devices', 'horovod', 'mpi')


def num_gpus():
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:  # a CPU-only build
        return 0


def _on_gpu(devices):
    return (devices or '').startswith('gpu') or (devices is None and num_gpus() > 0)


def _share_cores_politely(devices):
    """Before MPI starts: on CPU the ranks share the cores with MXNet's engine
    threads, and a rank that busy-polls for its peers starves them (4 ranks
    on 2 cores ran 8x slower). Open MPI then yields while it waits; it does
    so by itself only when it knows that ranks outnumber cores."""
    if not _on_gpu(devices):
        os.environ.setdefault('OMPI_MCA_mpi_yield_when_idle', '1')


def one_host():
    """All ranks on this host, as the launcher tells it (a lone process: yes)."""
    env = os.environ
    for size, local in (('HOROVOD_SIZE', 'HOROVOD_LOCAL_SIZE'),
                        ('OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_SIZE')):
        if size in env and local in env:
            return env[size] == env[local]
    return launcher_size() == 1


def parse_devices(spec):
    """'cpu', 'cpu:N', 'gpu', 'gpu:K', 'gpu:0,1', 'gpu:all' -> list of contexts."""
    kind, _, rest = spec.partition(':')
    try:
        if kind == 'cpu':
            n = int(rest) if rest else 1
            if n < 1:
                raise ValueError
            return [mx.cpu(i) for i in range(n)]
        if kind == 'gpu':
            have = num_gpus()
            ids = list(range(have)) if rest == 'all' else [int(i) for i in rest.split(',')] if rest else [0]
            if not ids or have == 0:
                raise UserError(f"--devices {spec}: no GPU found (this mxnet sees {have}); use --devices cpu")
            bad = [i for i in ids if not 0 <= i < have]
            if bad:
                raise UserError(f'--devices {spec}: no GPU {bad[0]} (this machine has {have})')
            if len(set(ids)) != len(ids):
                raise ValueError
            return [mx.gpu(i) for i in ids]
    except ValueError:
        pass
    raise UserError(f"--devices {spec}: expected cpu, cpu:N, gpu, gpu:K, gpu:0,1 or gpu:all")


def launcher_size():
    """World size announced by an MPI-style launcher (mpirun, srun), or 1."""
    env = os.environ
    # SLURM_STEP_NUM_TASKS: srun sets it in every task, with or without a PMI plugin.
    for key in ('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'MPI_LOCALNRANKS', 'PMIX_SIZE',
                'SLURM_STEP_NUM_TASKS'):
        if key in env:
            try:
                return int(env[key])
            except ValueError:
                pass
    return 1


def horovod_built():
    try:
        import horovod.mxnet  # noqa: F401
        return True
    except Exception:  # ImportError, or a build without MXNet support
        return False


def choose_backend(backend, devices):
    """auto: Horovod's launcher -> horovod; mpirun with several ranks -> horovod
    if it is built, else mpi; otherwise local or devices by --devices."""
    if backend != 'auto':
        return backend
    if 'HOROVOD_RANK' in os.environ or 'HOROVOD_HOSTNAME' in os.environ:
        return 'horovod'
    if launcher_size() > 1:
        return 'horovod' if horovod_built() else 'mpi'
    if devices and (devices == 'gpu:all' or ',' in devices or
                    (devices.startswith('cpu:') and devices != 'cpu:1')):
        return 'devices'
    return 'local'


class Layout:
    """One process with one or more contexts; the base of the others."""
    name = 'local'

    def __init__(self, contexts):
        self.contexts = contexts
        self.rank, self.size, self.local_rank = 0, 1, 0

    @property
    def is_main(self):
        return self.rank == 0

    def split(self, array, batch_axis=0, even_split=True):
        """One part per context, as gluon.utils.split_and_load cuts it."""
        return gluon.utils.split_and_load(array, self.contexts, batch_axis=batch_axis,
                                          even_split=even_split)

    def allreduce(self, x):
        """Sum a float64 numpy array over workers."""
        return np.asarray(x, dtype=np.float64)

    def broadcast(self, params):
        """Parameters from rank 0, in place."""

    def broadcast_value(self, x):
        """A small numpy array from rank 0."""
        return np.asarray(x, dtype=np.float64)

    def trainer(self, params, lr, fp16_allreduce=False):
        """A Trainer whose step(n) takes the global sample count of the step."""
        # 'device' kvstore: sums the per-context grads; none is made for one context
        return gluon.Trainer(params, 'sgd', {'learning_rate': lr}, kvstore='device')

    def describe(self):
        return f'{self.name}, {self.size} worker(s) x {len(self.contexts)} device(s) ({self.contexts[0]})'

    def close(self):
        pass


class Devices(Layout):
    name = 'devices'


class Horovod(Layout):
    name = 'horovod'

    def __init__(self, devices):
        try:
            import horovod.mxnet as hvd
        except Exception as e:
            raise LayoutError(f'--backend horovod: Horovod with MXNet is not available ({e}); '
                              'run ./bootstrap.sh setup, or use --backend mpi') from None
        _share_cores_politely(devices)
        if not _on_gpu(devices) and one_host():
            # a step of this model takes 1-2 ms: Horovod's default 1 ms cycle adds up
            # to a cycle of waiting to each step's allreduce (-np 2 on 2 cores: 1.2x
            # faster at 0.1 ms). Where measured only: on CPU, on one host, since each
            # cycle also talks to every rank. Read by hvd.init(); the user's value wins.
            os.environ.setdefault('HOROVOD_CYCLE_TIME', '0.1')
        hvd.init()  # distributed: join the job started by horovodrun / mpirun
        self.hvd = hvd
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        self.contexts = _one_context(self.name, devices, self.local_rank)
        self._calls = 0

    def _name(self, what):
        self._calls += 1
        return f'distsoftmax.{what}.{self._calls}'

    def allreduce(self, x):
        # distributed: sum metrics over ranks
        t = nd.array(np.asarray(x, dtype=np.float64), dtype='float64')
        return self.hvd.allreduce(t, op=self.hvd.Sum, name=self._name('allreduce')).asnumpy()

    def broadcast(self, params):
        # distributed: every rank starts from rank 0's parameters
        self.hvd.broadcast_parameters(params, root_rank=0)

    def broadcast_value(self, x):
        t = nd.array(np.asarray(x, dtype=np.float64), dtype='float64')
        return self.hvd.broadcast(t, root_rank=0, name=self._name('bcast')).asnumpy()

    def trainer(self, params, lr, fp16_allreduce=False):
        hvd = self.hvd
        compression = hvd.Compression.fp16 if fp16_allreduce else hvd.Compression.none

        class GlobalBatchTrainer(hvd.DistributedTrainer):
            # distributed: grads are summed over ranks by Horovod; its trainer
            # also divides by size, which we undo so that step(n) takes the
            # global count, as in every other layout
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                self._scale *= hvd.size()

        return GlobalBatchTrainer(params, 'sgd', {'learning_rate': lr}, compression=compression)

    def close(self):
        self.hvd.shutdown()


class Mpi(Layout):
    name = 'mpi'

    def __init__(self, devices):
        _share_cores_politely(devices)
        try:
            from mpi4py import MPI
        except Exception as e:
            raise LayoutError(f'--backend mpi: mpi4py is not available ({e}); '
                              'pip install mpi4py, or run ./bootstrap.sh setup') from None
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        self.contexts = _one_context(self.name, devices, self.local_rank)

    def allreduce(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty_like(x)
        self.comm.Allreduce(x, out, op=self.MPI.SUM)  # distributed: sum over ranks
        return out

    def broadcast(self, params):
        for _, p in sorted(params.items()):
            a = p.data().asnumpy()
            self.comm.Bcast(a, root=0)  # distributed: rank 0's values everywhere
            p.set_data(nd.array(a, dtype=a.dtype))

    def broadcast_value(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        self.comm.Bcast(x, root=0)
        return x

    def trainer(self, params, lr, fp16_allreduce=False):
        if fp16_allreduce:
            raise UserError('--fp16-allreduce needs the horovod backend')
        comm, MPI = self.comm, self.MPI

        class AllreduceTrainer(gluon.Trainer):
            def _allreduce_grads(self):
                # distributed: one Allreduce (sum) of all grads, flattened
                grads = [p.list_grad()[0] for p in self._params if p.grad_req != 'null']
                flat = nd.concat(*[g.reshape(-1) for g in grads], dim=0).asnumpy()
                total = np.empty_like(flat)
                comm.Allreduce(flat, total, op=MPI.SUM)
                offset = 0
                for g in grads:
                    g[:] = nd.array(total[offset:offset + g.size], ctx=g.context).reshape(g.shape)
                    offset += g.size

        return AllreduceTrainer(params, 'sgd', {'learning_rate': lr}, kvstore=None)

    def close(self):
        self.MPI.Finalize()  # here: mpi4py would at interpreter teardown, which run() skips


def _one_context(name, devices, local_rank):
    """One device per process: Horovod reduces only a process's first context."""
    kind, _, rest = (devices or '').partition(':')
    if kind == 'cpu' and rest in ('', '1'):
        return [mx.cpu()]
    if kind == 'gpu' and (rest == '' or rest.isdigit()):
        if num_gpus() == 0:
            raise UserError(f'--devices {devices}: no GPU found; use --devices cpu')
        return [mx.gpu(local_rank % num_gpus())]
    if not devices:
        return [mx.gpu(local_rank % num_gpus())] if num_gpus() else [mx.cpu()]
    raise UserError(f'--devices {devices}: the {name} backend uses one device per process '
                    '(several devices per Horovod process are not reduced); '
                    'use --devices cpu or gpu and start one process per device')


def make(backend='auto', devices=None):
    """The layout for this process, from --backend and --devices."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    chosen = choose_backend(backend, devices)
    if chosen == 'horovod':
        return Horovod(devices)
    if chosen == 'mpi':
        return Mpi(devices)
    if devices is None:
        contexts = [mx.gpu(0)] if num_gpus() else [mx.cpu()]
    else:
        contexts = parse_devices(devices)
    if chosen == 'local' and len(contexts) > 1:
        raise UserError(f'--devices {devices}: the local backend uses one device; use --backend devices')
    return (Devices if len(contexts) > 1 or chosen == 'devices' else Layout)(contexts)
