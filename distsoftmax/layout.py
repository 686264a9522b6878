"""Where the work runs: the one module that knows about processes and devices.

Every layout offers the same small interface, the abstract class Layout, and
the recipe and the loop use nothing else. Each layout must say how it sums over
workers (allreduce), sends rank 0's values (broadcast, broadcast_value), makes
a Trainer that reduces the gradients (trainer), ends the job at once (abort) and
leaves it (close); a layout that misses one cannot be made (TypeError). What
they share: rank, size, local_rank, contexts, is_main, split, barrier,
broadcast_text, agree, replicas_identical, peer_failed, describe.
  Local    one process, one context (cpu or gpu:K)
  Devices  one process, several contexts; the Trainer's kvstore sums the gradients
  Horovod  one context per process; hvd.DistributedTrainer allreduces them
  Mpi      one context per process; mpi4py allreduces them (MpiKVStore)
"""
import abc
import hashlib
import os
import socket

import numpy as np
from mxnet import gluon, nd

from . import launchers, startup, watchdog as watchdogs
from .contexts import contexts_of, num_gpus, one_context
from .mpi_kvstore import MpiKVStore
from .errors import DataError, LayoutError, UsageError, UserError, agreed

TEXT_BYTES = 4096    # an agreed error or a broadcast text travels as this many bytes


class Layout(abc.ABC):
    """What every layout shares; rank 0 of the job is the main one."""
    name = ''
    rank, size, local_rank = 0, 1, 0
    contexts = ()
    watchdog = None     # a job of several ranks: watchdog.Watchdog, started by start()

    @property
    def is_main(self):
        return self.rank == 0

    def split(self, array, batch_axis=0):
        """One equal part per context, as gluon.utils.split_and_load cuts it."""
        return gluon.utils.split_and_load(array, self.contexts, batch_axis=batch_axis)

    @abc.abstractmethod
    def allreduce(self, x):
        """The float64 numpy array x summed over workers."""

    @abc.abstractmethod
    def broadcast(self, params):
        """Parameters (a gluon ParameterDict) from rank 0, in place."""

    @abc.abstractmethod
    def broadcast_value(self, x, root=0):
        """A float64 numpy array from rank root."""

    @abc.abstractmethod
    def trainer(self, params, optimizer, fp16_allreduce=False):
        """A gluon Trainer of optimizer (a task.Optimizer) whose step(n) sums the
        gradients of every context and worker and divides by n. A layout chooses
        only how the gradients are reduced."""

    @abc.abstractmethod
    def abort(self, code):
        """End every rank of the job now (a failure on this rank alone)."""

    @abc.abstractmethod
    def close(self):
        """Leave the job; every rank calls it."""

    def mark(self, what, step=False):
        """Where this rank is about to wait for its peers (or, step=True, a
        training step): the watchdog's word for a stall."""
        if self.watchdog is not None:
            self.watchdog.at(what, step)

    def allgather_text(self, text, width=256):
        """Every rank's str (up to width bytes of UTF-8), a list by rank."""
        rows = np.zeros((self.size, width))
        raw = text.encode()[:width]
        rows[self.rank, :len(raw)] = np.frombuffer(raw, np.uint8)
        rows = self.allreduce(rows)
        return [row.astype(np.uint8).tobytes().rstrip(b'\0').decode(errors='replace') for row in rows]

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

    def agree(self, check):
        """check() on every rank; if it raised a UserError on any rank, every rank
        raises the first failing rank's error (same class, message and exit
        code), so that every rank exits alike and none waits on a peer that has left."""
        try:
            result, error = check(), None
        except UserError as e:
            result, error = None, e
        self.mark('the agreement on the checks before training')
        return self._agreed(result, error)

    def _agreed(self, result, error):
        failed = np.zeros(self.size)
        failed[self.rank] = error is not None
        failed = self.allreduce(failed)
        if not failed.any():
            return result
        first = int(np.flatnonzero(failed)[0])
        text, code = (f'{type(error).__name__}:{error}', error.exit_code) if error is not None else ('', 0)
        if self.size > 1:
            text, code = self.broadcast_text(text, root=first, code=code)
        name, _, message = text.partition(':')
        error_here = agreed(name, message, code)
        error_here.agreed = True      # every rank holds it: rank 0 alone says it
        raise error_here from error

    def agree_equal(self, value, what):
        """Every rank's value (a str) is rank 0's; else every rank raises the same
        DataError naming the ranks (and hosts) that differ."""
        if self.size == 1:
            return
        self.mark(f"the comparison of every rank's {what}")
        host = socket.gethostname()
        every = [row.split(' ', 1) for row in self.allgather_text(f'{value} {host}')]
        differ = [f'rank {r} on {h}' for r, (v, h) in enumerate(every) if v != every[0][0]]
        if differ:
            error = DataError(f"the ranks read different {what}: {', '.join(differ)} differ from rank 0's "
                              f'(on {every[0][1]}); give every rank the same files (--data-dir, '
                              'DISTSOFTMAX_DATA), or the same --synthetic and --seed')
            error.agreed = True     # every rank holds it: rank 0 alone says it
            raise error

    def replicas_identical(self, params):
        """Every context of every rank holds bit-identical parameters (digests compared)."""
        self.mark('the comparison of the replicas after training')
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

    def every_rank(self):
        """[(host, 'cpu(0),...')] of every rank, by rank."""
        mine = f"{socket.gethostname()} {','.join(str(c) for c in self.contexts)}"
        self.mark("the exchange of every rank's host and devices")
        return [tuple(row.split(' ', 1)) for row in self.allgather_text(mine)]

    def describe(self, every_rank=None):
        """'horovod, 4 worker(s) x 1 device(s) (gpu(0), gpu(1), ...)': every rank's
        devices where every_rank (every_rank()'s list) is given and they differ."""
        devices = [d for _, d in every_rank] if every_rank else [','.join(str(c) for c in self.contexts)]
        shown = ', '.join(devices[0].split(',')) + (' on every rank' if len(devices) > 1 else '') \
            if len(set(devices)) == 1 else '; '.join(devices)
        return f'{self.name}, {self.size} worker(s) x {len(self.contexts)} device(s) ({shown})'


class Local(Layout):
    name = 'local'

    def __init__(self, contexts):
        self.contexts = contexts

    def allreduce(self, x):
        return np.asarray(x, dtype=np.float64)      # one worker: the sum is x

    def broadcast(self, params):
        pass                                        # one worker: rank 0's already

    def broadcast_value(self, x, root=0):
        return np.asarray(x, dtype=np.float64)

    def trainer(self, params, optimizer, fp16_allreduce=False):
        # 'device': sums the per-context gradients; none is made for one context
        return gluon.Trainer(params, optimizer.name, optimizer.kwargs(), kvstore='device')

    def abort(self, code):
        startup.exit_now(code)

    def close(self):
        pass


class Devices(Local):
    name = 'devices'


# what Horovod, Gloo and Open MPI say when a peer has gone or stalled
PEER_GONE = ('Horovod has been shut down', 'HorovodInternalError', 'Timed out waiting',
             'pair closure', 'Connection closed by peer', 'Connection reset by peer', 'Broken pipe',
             'gloo::IoException', 'gloo::EnforceNotMet')


class Horovod(Layout):
    name = 'horovod'

    def __init__(self, devices, final, timeout):
        try:
            import horovod.mxnet as hvd
        except Exception as e:
            raise LayoutError(f'--layout horovod: Horovod with MXNet is not available ({e}); '
                              'run ./bootstrap.sh setup, or use --layout mpi') from None
        _set_defaults_for(devices, horovod=True)
        # horovodrun sets Gloo's timeout (30 s), for the rendezvous and every
        # collective: above the watchdog's, so that its one line comes first
        os.environ['HOROVOD_GLOO_TIMEOUT_SECONDS'] = str(int(watchdogs.startup_allowance(timeout) + 60))
        hvd.init()
        self.hvd, self.final = hvd, final
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()

    @staticmethod
    def _name(what, x):
        # one name a kind and shape, reused: a new name per call filled Horovod's response
        # cache, which said "A response has been evicted from cache" after about 1000 epochs
        return f"distsoftmax.{what}.{'x'.join(map(str, np.shape(x)))}"

    def allreduce(self, x):
        t = nd.array(np.asarray(x, dtype=np.float64), dtype='float64')
        return self.hvd.allreduce(t, op=self.hvd.Sum, name=self._name('allreduce', x)).asnumpy()

    def broadcast(self, params):
        self.hvd.broadcast_parameters(params, root_rank=0)

    def broadcast_value(self, x, root=0):
        t = nd.array(np.asarray(x, dtype=np.float64), dtype='float64')
        return self.hvd.broadcast(t, root_rank=root, name=self._name(f'bcast{root}', x)).asnumpy()

    def trainer(self, params, optimizer, fp16_allreduce=False):
        compression = self.hvd.Compression.fp16 if fp16_allreduce else self.hvd.Compression.none
        # DistributedTrainer averages: it divides rescale_grad by the world size.
        # Starting it at the world size makes step(n) divide the sum by n, as elsewhere.
        return self.hvd.DistributedTrainer(params, optimizer.name,
                                           dict(optimizer.kwargs(), rescale_grad=self.size),
                                           compression=compression)

    def peer_failed(self, error):
        return type(error).__name__ == 'HorovodInternalError' or any(s in str(error) for s in PEER_GONE)

    def abort(self, code):
        startup.exit_now(code)   # the launcher ends the other ranks

    def close(self):
        self.mark('leaving the job')
        if self.final:            # a library call leaves Horovod up for the next one
            self.hvd.shutdown()


class Mpi(Layout):
    name = 'mpi'

    def __init__(self, devices, final, timeout):
        _set_defaults_for(devices)
        try:
            from mpi4py import MPI
        except Exception as e:
            raise LayoutError(f'--layout mpi: mpi4py is not available ({e}); '
                              'pip install mpi4py, or run ./bootstrap.sh setup') from None
        self.MPI, self.comm, self.final = MPI, MPI.COMM_WORLD, final
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()

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

    def trainer(self, params, optimizer, fp16_allreduce=False):
        return gluon.Trainer(params, optimizer.name, optimizer.kwargs(), kvstore=MpiKVStore(self.comm))

    def abort(self, code):
        startup.flush()
        self.comm.Abort(code)  # every rank of the job ends; mpirun reports it

    def close(self):
        self.mark('leaving the job')
        if self.final:   # here, since the CLI skips the interpreter teardown where mpi4py would
            self.MPI.Finalize()


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
        raise UsageError(f'WORLD_SIZE={ranks} and RANK are set (torchrun sets them), but those ranks cannot '
                         'join one job here: Horovod and MPI rendezvous through their own launchers. Use '
                         'mpirun -np N or horovodrun -np N, or unset WORLD_SIZE and RANK for one process')
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


def start(layout, devices, session, timeout):
    """The layout of this process, also kept as session.layout: joins the job
    (hvd.init, MPI_Init) where there is one, starts its watchdog (timeout: s,
    watchdog.py), and agrees on its device."""
    chosen = choose_layout(layout, devices)
    if chosen in ('horovod', 'mpi'):
        joined = (Horovod if chosen == 'horovod' else Mpi)(devices, final=session.cli, timeout=timeout)
        session.layout = joined   # from here on, a failure must end every rank
        if joined.size > 1:
            joined.watchdog = watchdogs.Watchdog(rank=joined.rank, size=joined.size, timeout=timeout,
                                                 signalled=session.signals.first)
            session.callback(joined.watchdog.stop)
            joined.mark('the exchange of side-channel addresses')
            joined.watchdog.meet(joined.allgather_text(joined.watchdog.address()))  # distributed
        joined.contexts = joined.agree(lambda: one_context(devices, joined.local_rank))
        return joined
    contexts = contexts_of(devices)
    if chosen == 'local' and len(contexts) > 1:
        raise UsageError(f'--devices {devices}: the local layout uses one device; use --layout devices')
    session.layout = (Devices if chosen == 'devices' else Local)(contexts)
    return session.layout
