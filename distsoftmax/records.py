"""--log-dir DIR: a run directory that other tools read, written by rank 0.

  config.json    the resolved configuration (every flag) and the environment:
                 versions, hosts and devices of every rank, world size, layout,
                 the start time, the git commit of the code where there is one
  metrics.jsonl  one object per epoch, as --metrics writes them, then the summary
  metrics.csv    the epochs' rows as CSV (pandas.read_csv, spreadsheets)
  events.out.tfevents.*  TensorBoard (tensorboardX): epoch/train_loss, epoch/train_acc,
                 epoch/test_acc per epoch, step/train_loss per global step
  history.png    the loss and accuracy plot, rewritten after every epoch
Every file but the events is written whole and atomically after every epoch,
so an interrupted run leaves them up to its last epoch.
"""
import csv
import dataclasses
import io
import json
import os
import platform
import subprocess

from . import __version__, report
from .errors import OutputError
from .files import check_output_dir, write_text

CSV_FIELDS = ('epoch', 'train_loss', 'train_acc', 'test_acc', 'samples', 'seconds', 'samples_per_s')


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _versions():
    import importlib.metadata as metadata
    found = {'distsoftmax': __version__, 'python': platform.python_version()}
    for name in ('mxnet', 'mxnet-cu112', 'mxnet-cu117', 'horovod', 'mpi4py', 'numpy'):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _git_commit():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(here, '.git')):
        return None
    try:
        r = subprocess.run(['git', '-C', here, 'rev-parse', 'HEAD'], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None


class Records:
    """Rank 0's run directory. Raises OutputError naming the file if one cannot be written."""

    def __init__(self, directory, *, cfg, task, layout, every_rank, started):
        self.dir = directory
        self.writer = None
        self._write('config.json', json.dumps({
            'config': _jsonable(cfg), 'math_flags': {k: v for k, v in task.math_flags({}).items() if k != 'data'},
            'versions': _versions(), 'git_commit': _git_commit(), 'started': started,
            'layout': layout.name, 'world_size': layout.size,
            'ranks': [{'rank': r, 'host': host, 'devices': devices} for r, (host, devices) in enumerate(every_rank)],
        }, indent=1) + '\n')

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _write(self, name, text):
        try:
            write_text(self._path(name), text)
        except OSError as e:
            raise OutputError(f'--log-dir {self.dir}: cannot write {name} ({e.strerror})') from None

    def epoch(self, history, step_loss, first_step, title):
        """After an epoch: its rows, its points and the plot. step_loss: the mean loss
        per sample of each of its steps; first_step: the global step of the first."""
        m = history[-1]
        self._write('metrics.jsonl', ''.join(json.dumps(row) + '\n' for row in history))
        out = io.StringIO()
        w = csv.DictWriter(out, CSV_FIELDS, extrasaction='ignore', lineterminator='\n')
        w.writeheader()
        w.writerows(history)
        self._write('metrics.csv', out.getvalue())
        events = self._events()
        for key in ('train_loss', 'train_acc', 'test_acc'):
            events.add_scalar(f'epoch/{key}', m[key], m['epoch'])
        for i, loss in enumerate(step_loss):
            events.add_scalar('step/train_loss', loss, first_step + i)
        events.flush()
        try:
            report.plot_history(self._path('history.png'), history, title)
        except OutputError as e:
            raise OutputError(f'--log-dir {self.dir}: {str(e).removeprefix("--plot ")}') from None

    def finish(self, history, summary):
        self._write('metrics.jsonl', ''.join(json.dumps(row) + '\n' for row in [*history, summary]))
        self.close()

    def _events(self):
        if self.writer is None:
            from tensorboardX import SummaryWriter   # protobuf: only for a run that logs
            self.writer = SummaryWriter(self.dir, flush_secs=3600)
        return self.writer

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def check(directory):
    """Before training: DIR is made and writable (raises OutputError)."""
    check_output_dir('--log-dir', directory)
