"""What rank 0 shows: log lines, one write each; plots that say which run they show."""
import io
import re
import sys

import numpy as np
import pytest

from harness import run_cli
from distsoftmax import report

EPOCHS = [{'epoch': 1, 'train_loss': 0.79, 'train_acc': 0.75, 'test_acc': 0.79, 'samples': 60000,
           'seconds': 0.3, 'samples_per_s': 2e5}]


class Writes(io.StringIO):
    def __init__(self):
        super().__init__()
        self.calls = []

    def write(self, text):
        self.calls.append(text)
        return super().write(text)


def test_each_line_is_one_write_with_an_optional_timestamp(monkeypatch):
    out = Writes()
    monkeypatch.setattr(sys, 'stdout', out)
    report.Log(main=True).epoch(EPOCHS[0])
    report.Log(main=True, timestamps=True).info('hello')
    report.Log(main=False).always('rank 1 says nothing')
    assert out.calls[0] == report.epoch_line(EPOCHS[0]) + '\n'   # where it is saved: the start and done lines
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d hello\n', out.calls[1])
    assert len(out.calls) == 2      # one write a line, so a launcher's tags never cut one


def test_done_line_counts_epochs_in_words(monkeypatch):
    out = Writes()
    monkeypatch.setattr(sys, 'stdout', out)
    base = {'describe': 'devices, 1 worker(s) x 2 device(s) (cpu(0), cpu(1))', 'seconds': 0.2,
            'test_acc': 0.8}
    report.Log(main=True).done(dict(base, epochs=1, resumed_after=0))
    report.Log(main=True).done(dict(base, epochs=12, resumed_after=10), outputs=[('metrics', 'm.jsonl'),
                                                                                 ('log dir', 'runs/a')])
    assert out.calls == ['done: devices, 1 worker(s) x 2 device(s) (cpu(0), cpu(1)), 1 epoch, 0.2 s '
                         'training, final test acc 0.8000\n',
                         'done: devices, 1 worker(s) x 2 device(s) (cpu(0), cpu(1)), 12 epochs (2 this run), '
                         '0.2 s training, final test acc 0.8000; wrote metrics m.jsonl, log dir runs/a\n']


def test_the_confusion_table_keeps_full_class_names():
    import numpy as np
    from distsoftmax import data
    table = report.confusion_table(np.eye(10) * 1000, data.CLASSES)
    header, first = table.splitlines()[:2]
    assert 'ankle boot' in header and 't-shirt/top' in header and first.startswith('t-shirt/top ')
    assert len({len(line) for line in table.splitlines()}) == 1     # the columns line up


def test_the_device_list_says_what_every_rank_uses():
    from types import SimpleNamespace
    from distsoftmax import layout
    fake = SimpleNamespace(name='horovod', size=2, contexts=['gpu(0)'])
    assert layout.Layout.describe(fake, [('a', 'gpu(0)'), ('a', 'gpu(1)')]) == \
        'horovod, 2 worker(s) x 1 device(s) (gpu(0); gpu(1))'
    assert layout.Layout.describe(fake, [('a', 'cpu(0)'), ('b', 'cpu(0)')]) == \
        'horovod, 2 worker(s) x 1 device(s) (cpu(0) on every rank)'


def test_history_plot_has_a_title_and_whole_epoch_ticks():
    fig = report.history_figure(EPOCHS, 'horovod, 2 worker(s) x 1 device(s); lr 0.1')
    assert fig._suptitle.get_text() == 'horovod, 2 worker(s) x 1 device(s); lr 0.1'
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_confusion_plot_says_its_accuracy_and_labels_its_colour_bar():
    matrix = np.diag(np.full(10, 90.0)) + 1
    fig = report.confusion_figure(matrix, [f'class {i}' for i in range(10)], 'ck, epoch 5: test acc 0.9000')
    image_ax, bar_ax = fig.axes
    assert image_ax.get_title() == 'ck, epoch 5: test acc 0.9000'
    assert bar_ax.get_ylabel() == 'test samples'


def test_help_says_the_defaults_environment_and_exit_codes():
    r = run_cli('--help')
    text = ' '.join(r.stdout.split())
    assert r.stdout.startswith('usage: distsoftmax [train|evaluate|env] [flags]')
    assert '"distsoftmax env" reports' in text and 'launch/elastic.sh' in text
    assert '--seed SEED seed of the initial weights and every epoch\'s shuffle (default: 0)' in text
    for name in ('DISTSOFTMAX_DATA', 'XDG_CACHE_HOME', 'DISTSOFTMAX_MIRROR', 'OMP_NUM_THREADS=1',
                 'HOROVOD_CYCLE_TIME=0.1', 'OMPI_MCA_mpi_yield_when_idle=1', 'DISTSOFTMAX_COMMIT_STEPS'):
        assert name in text
    assert 'exit codes: 0 done; 1 a run error' in text and '143 SIGTERM' in text
    r = run_cli('--version')
    assert r.returncode == 0 and re.fullmatch(r'distsoftmax \d+\.\d+\.\d+\n', r.stdout)


@pytest.mark.parametrize('args', [[], ['--quiet']])
def test_a_closed_stdout_ends_quietly(args, tmp_path):
    import subprocess
    from harness import ROOT, env
    p = subprocess.run(f'{sys.executable} -m distsoftmax --synthetic 3000 --epochs 3 {" ".join(args)} | head -1',
                       shell=True, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120,
                       executable='/bin/bash')
    assert p.stderr == '' and len(p.stdout.splitlines()) == 1, p.stderr


def test_output_directories_are_made(tmp_path):
    r = run_cli('--synthetic', '600', '--epochs', '1', '--quiet', '--metrics', tmp_path / 'runs' / 'm.jsonl',
                '--plot', tmp_path / 'runs' / 'p.png')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'runs' / 'm.jsonl').exists() and (tmp_path / 'runs' / 'p.png').exists()
