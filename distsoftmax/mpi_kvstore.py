"""Gradient reduction over MPI for Gluon's Trainer, through MXNet's public
custom-kvstore interface (mx.kvstore.KVStoreBase): the Mpi layout's trainer."""
import ctypes

import mxnet as mx
import numpy as np
from mxnet import nd


class MpiKVStore(mx.kvstore.KVStoreBase):
    """The Trainer's gradient reduction as an mpi4py Allreduce (sum), through
    MXNet's public custom-kvstore interface. CPU gradients are reduced in place
    in their own memory; others through a host copy (the MPI is not assumed
    CUDA-aware)."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.comm, self.MPI = comm, MPI

    def broadcast(self, key, value, out, priority=0):
        for v, o in zip(_listed(value), _listed(out)):
            o[:] = v   # the layout broadcasts parameters itself, before the Trainer

    def pushpull(self, key, value, out=None, priority=0):
        for grad, dest in zip(_listed(value), _listed(out if out is not None else value)):
            if grad.context.device_type == 'cpu' and dest is grad:
                grad.wait_to_read()
                self.comm.Allreduce(self.MPI.IN_PLACE, _host_view(grad), op=self.MPI.SUM)
            else:
                host = grad.asnumpy()
                self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
                dest[:] = nd.array(host, ctx=dest.context, dtype=host.dtype)

    @staticmethod
    def is_capable(capability):
        return False   # no optimizer on the store: the Trainer updates locally

    @property
    def type(self):
        return 'mpi4py'

    @property
    def rank(self):
        return self.comm.Get_rank()

    @property
    def num_workers(self):
        return self.comm.Get_size()

    def save_optimizer_states(self, fname, dump_optimizer=False):
        raise NotImplementedError

    def load_optimizer_states(self, fname):
        raise NotImplementedError


def _listed(x):
    return x if isinstance(x, (list, tuple)) else [x]


def _host_view(array):
    """A numpy view of a CPU NDArray's own memory (no copy); the array must be ready."""
    ptr = ctypes.c_void_p()
    mx.base.check_call(mx.base._LIB.MXNDArrayGetData(array.handle, ctypes.byref(ptr)))
    ctype = np.ctypeslib.as_ctypes_type(np.dtype(array.dtype))
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctype)), shape=array.shape)
