"""What a run is asked to do: typed, frozen values, parsed once by the CLI.

Nothing here imports mxnet; the layout turns a Devices value into contexts.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from .errors import UsageError

LAYOUTS = ('auto', 'local', 'devices', 'horovod', 'mpi')


@dataclass(frozen=True)
class Devices:
    """--devices: 'cpu', 'cpu:N', 'gpu', 'gpu:K', 'gpu:0,1', 'gpu:all', or unset (None kind:
    gpu:0 if a GPU is visible, else cpu)."""
    kind: Optional[str] = None          # 'cpu', 'gpu' or None
    count: int = 1                      # cpu:N
    gpu_ids: Optional[Tuple[int, ...]] = None   # None with kind 'gpu': every GPU
    spec: str = ''

    @classmethod
    def parse(cls, spec):
        kind, _, rest = spec.partition(':')
        try:
            if kind == 'cpu':
                count = int(rest) if rest else 1
                if count >= 1:
                    return cls('cpu', count, spec=spec)
            elif kind == 'gpu':
                if rest == 'all':
                    return cls('gpu', gpu_ids=None, spec=spec)
                ids = tuple(int(i) for i in rest.split(',')) if rest else (0,)
                if len(set(ids)) == len(ids) and min(ids) >= 0:
                    return cls('gpu', gpu_ids=ids, spec=spec)
        except ValueError:
            pass
        raise UsageError(f'--devices {spec}: expected cpu, cpu:N, gpu, gpu:K, gpu:0,1 or gpu:all')

    @property
    def several(self):
        """More than one context in this process."""
        return self.count > 1 if self.kind == 'cpu' else \
            self.kind == 'gpu' and (self.gpu_ids is None or len(self.gpu_ids) > 1)

    def __str__(self):
        return self.spec or 'default'


@dataclass(frozen=True)
class Data:
    """Where the samples come from: IDX files (a directory, or the search order of
    data.locate) or N synthetic samples drawn from the run's seed."""
    data_dir: Optional[str] = None
    synthetic: Optional[int] = None     # samples; 0: the checkpoint's (evaluate)
    verify: bool = True


@dataclass(frozen=True)
class Train:
    """What `distsoftmax train` is asked to do (cli.parse makes it, by keyword)."""
    epochs: int = 5
    batch_size: int = 256               # global: split over every worker and device
    lr: float = 0.1
    lr_scaling: str = 'none'            # task.SCALINGS: the lr of the global batch
    warmup_epochs: float = 0.0          # linear warmup, per step
    seed: int = 0
    drop_last: bool = False
    data: Data = Data()
    devices: Devices = Devices()
    layout: str = 'auto'
    fp16_allreduce: bool = False
    checkpoint_dir: Optional[str] = None
    resume: object = False              # True, or an epoch directory of checkpoint_dir to resume
    overwrite: bool = False
    init_from: Optional[str] = None     # a checkpoint whose weights start the run
    keep: int = 1                       # epoch directories kept: the last N
    keep_best: bool = False             # and the best by test accuracy
    metrics: Optional[str] = None
    plot: Optional[str] = None
    log_dir: Optional[str] = None       # records.py's run directory
    quiet: bool = False
    timestamps: bool = False
    dry_run: bool = False
    timeout: float = 300.0              # s: the longest any rank may wait for its peers (watchdog.py)


@dataclass(frozen=True)
class Env:
    """`distsoftmax env`: the environment report (environment.py)."""
    as_json: bool = False


@dataclass(frozen=True)
class Evaluate:
    checkpoint_dir: str
    data: Optional[Data] = None         # None: the data the checkpoint was trained on
    devices: Devices = Devices()
    layout: str = 'auto'
    plot: Optional[str] = None
    timeout: float = 300.0
