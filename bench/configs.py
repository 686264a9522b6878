"""What the bench runs and what it holds the results to, as data.

Every configuration is one Config object, named once; the targets and the peer
ratios refer to those objects, and each threshold is one number in one Target.
Why a missed target misses is prose in bench/WHY.md, one section per target key.
"""
import os
from dataclasses import dataclass, field

CORES = len(os.sched_getaffinity(0))  # what this process may use, not what the host has

DISTSOFTMAX, ANCHOR, TORCH, NATIVE = 'distsoftmax', 'anchor', 'torch', 'native'
# set where older OpenBLAS builds misdetect the CPU; numpy-floor-unset runs without both
OPENBLAS_VARS = ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE')


@dataclass
class Config:
    name: str                  # what --only takes, and the row of the table
    label: str                 # what ran, in words
    kind: str                  # DISTSOFTMAX, ANCHOR (mxnet/numpy script), TORCH (script) or
                               # NATIVE (the C floor, built at run time by bench/native.py)
    workers: int = 1
    launcher: str = 'local'    # local, horovodrun, mpirun or torchrun
    args: tuple = ()           # distsoftmax flags, or the anchor script and its extra argv
    transport: str = None      # horovodrun only: '--gloo', '--mpi', None (its own choice)
    weak: bool = False         # the global batch grows with the workers: other math
    env: dict = field(default_factory=dict)
    unset: tuple = ()          # environment variables removed for this configuration alone
    blas_probe: bool = False   # run through bench/blas_probe.py: record the BLAS kernel

    @property
    def note(self):
        return 'weak scaling' if self.weak else ''


# -- every configuration, in the order of a round --------------------------------------

TEXTBOOK = Config('textbook', 'textbook pipeline (seed_gluonbook.py, 4 loader workers)',
                  ANCHOR, args=('seed_gluonbook.py', '4'))
NUMPY_FLOOR = Config('numpy-floor', 'numpy floor (numpy_floor.py)', ANCHOR,
                     args=('numpy_floor.py',), blas_probe=True)
# the same, with OpenBLAS left to detect the CPU itself: run only where the
# environment sets either variable (else it is numpy-floor again); bench/README.md
# says why the target is held to numpy-floor, as the environment gives it
NUMPY_FLOOR_UNSET = Config('numpy-floor-unset', 'numpy floor, ' + ' and '.join(OPENBLAS_VARS)
                           + ' unset', ANCHOR, args=('numpy_floor.py',), unset=OPENBLAS_VARS,
                           blas_probe=True)
# the physical limit's reference: the same training in C, one thread (c_floor.c),
# in the fastest mode this CPU supports
C_FLOOR = Config('c-floor', 'C floor (c_floor.c, cc -O3 -march=native, one thread)', NATIVE)
LOCAL = Config('local', 'distsoftmax, local CPU', DISTSOFTMAX)
# distsoftmax defaults to one OpenMP thread per process: does every core help?
# MXNet's NaiveEngine: every operation on the Python thread, no engine thread
NAIVE_ENV = {'MXNET_ENGINE_TYPE': 'NaiveEngine'}
LOCAL_NAIVE = Config('local-naive', 'distsoftmax, local CPU, MXNET_ENGINE_TYPE=NaiveEngine',
                     DISTSOFTMAX, env=NAIVE_ENV)
LOCAL_ALL_CORES = Config('local-all-cores', f'distsoftmax, local CPU, OMP_NUM_THREADS={CORES}',
                         DISTSOFTMAX, env={'OMP_NUM_THREADS': str(CORES)})
DEVICES_CPU2 = Config('devices-cpu2', 'distsoftmax --devices cpu:2', DISTSOFTMAX,
                      args=('--devices', 'cpu:2'))
HOROVOD_NP1 = Config('horovod-np1', 'horovodrun -np 1', DISTSOFTMAX, 1, 'horovodrun')
HOROVOD_NP2 = Config('horovod-np2', 'horovodrun -np 2 (its default controller)', DISTSOFTMAX,
                     2, 'horovodrun')
HOROVOD_NP2_GLOO = Config('horovod-np2-gloo', 'horovodrun -np 2 --gloo', DISTSOFTMAX, 2,
                          'horovodrun', transport='--gloo')
HOROVOD_NP2_MPI = Config('horovod-np2-mpi', 'horovodrun -np 2 --mpi', DISTSOFTMAX, 2,
                         'horovodrun', transport='--mpi')
HOROVOD_NP4 = Config('horovod-np4', 'horovodrun -np 4', DISTSOFTMAX, 4, 'horovodrun')
MPIRUN_HOROVOD_NP2 = Config('mpirun-horovod-np2', 'mpirun -np 2, Horovod workers (--layout auto)',
                            DISTSOFTMAX, 2, 'mpirun')
MPI_NP2 = Config('mpi-np2', 'mpirun -np 2 --layout mpi (mpi4py)', DISTSOFTMAX, 2, 'mpirun',
                 ('--layout', 'mpi'))
MPI_NP2_NAIVE = Config('mpi-np2-naive', 'mpirun -np 2 --layout mpi, MXNET_ENGINE_TYPE=NaiveEngine',
                       DISTSOFTMAX, 2, 'mpirun', ('--layout', 'mpi'), env=NAIVE_ENV)
# the same per-worker batch (256) as -np 1: the global batch grows with the workers
HOROVOD_NP2_WEAK = Config('horovod-np2-weak', 'horovodrun -np 2 --batch-size 512', DISTSOFTMAX,
                          2, 'horovodrun', ('--batch-size', '512'), weak=True)
HOROVOD_NP4_WEAK = Config('horovod-np4-weak', 'horovodrun -np 4 --batch-size 1024', DISTSOFTMAX,
                          4, 'horovodrun', ('--batch-size', '1024'), weak=True)
# the peer, PyTorch, with the interpreter that --torch names
TORCH_TYPICAL = Config('torch-typical', 'PyTorch typical (torch_typical.py, DataLoader)', TORCH,
                       args=('torch_typical.py',))
TORCH_TUNED = Config('torch-tuned', 'PyTorch tuned (torch_tuned.py, preloaded)', TORCH,
                     args=('torch_tuned.py',))
TORCHRUN_TYPICAL = Config('torchrun-typical-np2', 'torchrun --nproc_per_node=2 torch_typical.py',
                          TORCH, 2, 'torchrun', ('torch_typical.py',))
TORCHRUN_TUNED = Config('torchrun-tuned-np2', 'torchrun --nproc_per_node=2 torch_tuned.py',
                        TORCH, 2, 'torchrun', ('torch_tuned.py',))

CONFIGS = (TEXTBOOK, C_FLOOR, NUMPY_FLOOR, NUMPY_FLOOR_UNSET, LOCAL, LOCAL_NAIVE, LOCAL_ALL_CORES,
           DEVICES_CPU2, HOROVOD_NP1, HOROVOD_NP2, HOROVOD_NP2_GLOO, HOROVOD_NP2_MPI, HOROVOD_NP4,
           MPIRUN_HOROVOD_NP2, MPI_NP2, MPI_NP2_NAIVE, HOROVOD_NP2_WEAK, HOROVOD_NP4_WEAK,
           TORCH_TYPICAL, TORCH_TUNED, TORCHRUN_TYPICAL, TORCHRUN_TUNED)
BY_NAME = {c.name: c for c in CONFIGS}
assert len(BY_NAME) == len(CONFIGS), 'two configurations share a name'

# every distsoftmax layout with two workers and the math of batch 256 (default engine)
TWO_WORKER_LAYOUTS = tuple(c for c in CONFIGS if c.kind == DISTSOFTMAX and c.workers == 2
                           and not c.weak and not c.env)


def default_configs(torch=False, environ=None):
    """What a run without --only measures: the torch rows only with an interpreter,
    numpy-floor-unset only where the environment sets what it unsets."""
    environ = os.environ if environ is None else environ
    return [c for c in CONFIGS if (torch or c.kind != TORCH)
            and (not c.unset or any(v in environ for v in c.unset))]


# -- what the results are held to ------------------------------------------------------

SAMPLES, WALL, RSS = 'samples_per_s', 'wall_s', 'rss_mb'
# training samples per CPU-second of the whole process tree (every rank, the
# launcher, imports and data load included): what a busy machine moves least
CPU_SAMPLES = 'samples_per_cpu_s'
UNITS = {SAMPLES: 'samples/s', WALL: 's', RSS: 'MB', CPU_SAMPLES: 'samples/CPU-s'}


@dataclass(frozen=True)
class Target:
    """One number per round: the largest METRIC among NUM's runs of that round,
    divided by DEN's run of the same round (or, without DEN, as it is); the
    target's value is the median over the rounds. WANT is the threshold (None:
    only reported), met when the value is >= WANT, or <= WANT if AT_MOST."""
    key: str                   # the section of bench/WHY.md that explains a miss
    text: str                  # '{want}' is replaced by the threshold
    num: tuple
    den: Config = None
    metric: str = SAMPLES
    want: float = None
    at_most: bool = False

    def describe(self):
        want = '-' if self.want is None else f'{self.want:g}'
        if self.den and '.' not in want:
            want += '.0'        # a ratio: 1.0x, 2.0x
        return self.text.format(want=want)

    def met(self, value):
        if self.want is None or value is None:
            return None
        return value <= self.want if self.at_most else value >= self.want

    def configs(self):
        return self.num + ((self.den,) if self.den else ())


LOCAL_WALL = Target('local-wall', 'local whole process <= {want} s (import, data load, '
                    'verification included)', (LOCAL,), metric=WALL, want=5.0, at_most=True)
TARGETS = (
    Target('vs-textbook', 'local samples/s >= {want}x textbook', (LOCAL,), TEXTBOOK, want=15.0),
    Target('vs-numpy-floor', 'local samples/s >= {want}x numpy floor', (LOCAL,), NUMPY_FLOOR,
           want=1.0),
    Target('gloo-vs-mpi', 'horovodrun -np 2 --gloo samples/s >= {want}x horovodrun -np 2 --mpi',
           (HOROVOD_NP2_GLOO,), HOROVOD_NP2_MPI, want=0.8),
    Target('mpi4py-vs-horovod', 'mpirun -np 2 --layout mpi samples/s >= {want}x '
           'Horovod workers under plain mpirun -np 2', (MPI_NP2,), MPIRUN_HOROVOD_NP2, want=0.9),
    Target('np2-wall', 'horovodrun -np 2 whole-process wall <= {want}x local\'s',
           (HOROVOD_NP2,), LOCAL, WALL, want=2.0, at_most=True),
    Target('best-2-worker', 'best 2-worker layout samples/s >= {want}x local',
           TWO_WORKER_LAYOUTS, LOCAL, want=0.85),
    Target('strong-scaling', 'horovodrun -np 2 samples/s >= {want}x -np 1 (strong scaling)',
           (HOROVOD_NP2,), HOROVOD_NP1, want=1.4),
    Target('peak-rss', 'peak RSS <= {want} MB per worker (worst distsoftmax config)',
           tuple(c for c in CONFIGS if c.kind == DISTSOFTMAX), metric=RSS, want=300,
           at_most=True),
    LOCAL_WALL,
)

# the limit and the engine: ratios only, no thresholds (RESULTS.md, "The limit")
LIMITS = (
    Target('local-vs-c-floor', 'local samples/s / C floor\'s', (LOCAL,), C_FLOOR),
    Target('local-vs-c-floor-cpu', 'local samples per CPU-s (whole process) / C floor\'s',
           (LOCAL,), C_FLOOR, CPU_SAMPLES),
    Target('numpy-vs-c-floor', 'numpy floor samples/s / C floor\'s', (NUMPY_FLOOR,), C_FLOOR),
    Target('numpy-unset-vs-numpy', 'numpy floor with OPENBLAS_* unset / as the environment gives',
           (NUMPY_FLOOR_UNSET,), NUMPY_FLOOR),
    Target('naive-vs-local', 'local with NaiveEngine samples/s / local\'s', (LOCAL_NAIVE,), LOCAL),
    Target('naive-np2-vs-local', 'mpirun -np 2 --layout mpi with NaiveEngine / local',
           (MPI_NP2_NAIVE,), LOCAL),
    Target('naive-np2-vs-np2', 'mpirun -np 2 --layout mpi with NaiveEngine / without',
           (MPI_NP2_NAIVE,), MPI_NP2),
)

# the peer: ratios only, no thresholds
PEERS = (
    Target('peer-tuned', 'local samples/s / PyTorch tuned (1 process)', (LOCAL,), TORCH_TUNED),
    Target('peer-typical', 'local samples/s / PyTorch typical (1 process)', (LOCAL,),
           TORCH_TYPICAL),
    Target('peer-np2-tuned', 'horovodrun -np 2 samples/s / torchrun --nproc_per_node=2 tuned',
           (HOROVOD_NP2,), TORCHRUN_TUNED),
    Target('peer-np2-typical', 'horovodrun -np 2 samples/s / torchrun --nproc_per_node=2 '
           'typical', (HOROVOD_NP2,), TORCHRUN_TYPICAL),
    Target('peer-rss', 'local peak RSS / PyTorch tuned\'s (1 process)', (LOCAL,), TORCH_TUNED,
           RSS),
    Target('peer-rss-np2', 'horovodrun -np 2 peak RSS per worker / torchrun tuned\'s',
           (HOROVOD_NP2,), TORCHRUN_TUNED, RSS),
)
