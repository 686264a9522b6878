"""Which launcher started this process, read from its environment alone.

One row a launcher, tried in order (as Lightning Fabric's cluster
environments are): what it sets for the world size, the rank, the local rank
and the local size. Nothing here talks to other processes or imports mxnet:
the CLI reads it before any communicator exists (to print once per job), the
layout module to choose a layout, the tests to clean their environment.
"""
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Launcher:
    name: str
    size: str
    rank: str
    local_rank: str = ''
    local_size: str = ''


LAUNCHERS = (
    Launcher('horovodrun', 'HOROVOD_SIZE', 'HOROVOD_RANK', 'HOROVOD_LOCAL_RANK', 'HOROVOD_LOCAL_SIZE'),
    Launcher('mpirun (Open MPI)', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK',
             'OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_SIZE'),
    Launcher('PMIx', 'PMIX_SIZE', 'PMIX_RANK'),
    Launcher('PMI (MPICH, Intel MPI)', 'PMI_SIZE', 'PMI_RANK'),
    # srun sets these in every task, with or without a PMI plugin
    Launcher('srun', 'SLURM_STEP_NUM_TASKS', 'SLURM_PROCID', 'SLURM_LOCALID'),
    # recognised to be refused: its ranks rendezvous through torch.distributed alone
    Launcher('torchrun', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'),
)
# horovodrun --mpi sets no HOROVOD_RANK, but HOROVOD_HOSTNAME on every rank
HOROVODRUN_MARKS = ('HOROVOD_RANK', 'HOROVOD_HOSTNAME')
VARIABLES = tuple(v for row in LAUNCHERS for v in (row.size, row.rank, row.local_rank, row.local_size)
                  if v) + HOROVODRUN_MARKS


def detect(env=None):
    """The first launcher whose size and rank variables are both set, or None."""
    env = os.environ if env is None else env
    for row in LAUNCHERS:
        if row.size in env and row.rank in env:
            return row
    return None


def _int(env, key, default):
    try:
        return int(env[key])
    except (KeyError, ValueError):
        return default


def world_size(env=None):
    """The world size the launcher announced; 1 for a lone process."""
    env = os.environ if env is None else env
    row = detect(env)
    return _int(env, row.size, 1) if row else 1


def rank(env=None):
    """This process's rank as the launcher announced it; 0 for a lone process."""
    env = os.environ if env is None else env
    row = detect(env)
    return _int(env, row.rank, 0) if row else 0


def by_horovodrun(env=None):
    env = os.environ if env is None else env
    return any(k in env for k in HOROVODRUN_MARKS)


def one_host(env=None):
    """Every rank on this host, as the launcher tells it; unknown counts as no."""
    env = os.environ if env is None else env
    row = detect(env)
    if row is None:
        return True
    if row.local_size and row.local_size in env:
        return env[row.local_size] == env[row.size]
    return world_size(env) == 1
