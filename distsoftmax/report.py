"""What rank 0 shows and writes: log lines, progress, metrics, plots, tables."""
import datetime
import json
import sys

from . import __version__
from .errors import OutputError
from .files import write_atomic, write_text


def stamp():
    """Now as RFC 3339, local time with its offset (the --timestamps prefix)."""
    return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


class Log:
    """What rank 0 prints: one line an event, each in one write (a launcher that
    tags output lines sees whole lines); other ranks print nothing. Results go to
    stdout, notes to stderr; timestamps: an RFC 3339 time first on each line."""

    def __init__(self, *, main, quiet=False, timestamps=False):
        self.main, self.quiet, self.timestamps = main, quiet, timestamps
        self.lost = None        # (stream name, reason) once a stream could not be written

    def _emit(self, line, stream):
        if self.timestamps:   # RFC 3339, local time with its offset
            line = stamp() + ' ' + line
        try:
            stream.write(line + '\n')
            stream.flush()
        except BrokenPipeError:
            raise               # a closed pipe (| head): the run ends quietly, exit 141
        except OSError as e:    # a full disk behind a redirect: the run goes on
            self._lost(stream, e)

    def _lost(self, stream, error):
        if self.lost is not None:
            return
        name = 'stdout' if stream is sys.stdout else 'stderr'
        self.lost = (name, error.strerror or str(error))
        other = sys.stderr if stream is sys.stdout else sys.stdout
        try:
            other.write(f'distsoftmax: error: cannot write to {name} ({self.lost[1]}); training goes on, '
                        'and the run will exit 1 at its end\n')
            other.flush()
        except OSError:
            pass

    def check_streams(self, kept):
        """Raise OutputError at the end if a log stream was lost; kept: what stays, in words."""
        if self.lost is not None:
            name, reason = self.lost
            raise OutputError(f'{name} could not be written ({reason}); the run finished: {kept}')

    def info(self, line):
        if self.main and not self.quiet:
            self._emit(line, sys.stdout)

    def always(self, line):
        if self.main:
            self._emit(line, sys.stdout)

    def warn(self, line):
        if self.main:
            self._emit(f'distsoftmax: {line}', sys.stderr)

    def resumed(self, cfg, done):
        if done:
            self.info(f'resumed from {cfg.checkpoint_dir} after epoch {done}')
        if done >= cfg.epochs:
            self.info(f'already trained {_count(done, "epoch")} (--epochs {cfg.epochs}): nothing to do')

    def start(self, *, where, task, plan, epochs, source, outputs):
        """The start line: where it runs, what it trains, where it writes."""
        writes = '; writes ' + ', '.join(f'{what} {path}' for what, path in outputs) if outputs else ''
        self.info(f'start: {where}; {_count(epochs, "epoch")} of {len(plan.step_sizes)} steps (global batch '
                  f'{task.batch_size}, lr {_lr(task)}, seed {task.seed}) on {source}{writes}')

    def epoch(self, metrics):
        self.info(epoch_line(metrics))

    def done(self, s, outputs=()):
        if s['test_acc'] is None:
            return
        this_run = s['epochs'] - s['resumed_after']
        epochs = _count(s['epochs'], 'epoch') + (f' ({this_run} this run)' if s['resumed_after'] else '')
        wrote = '; wrote ' + ', '.join(f'{what} {path}' for what, path in outputs) if outputs else ''
        self.always(f"done: {s['describe']}, {epochs}, {s['seconds']:.1f} s training, "
                    f"final test acc {s['test_acc']:.4f}{wrote}")

    def progress(self, epochs):
        """A per-epoch progress bar factory on a terminal, else None; the bar open
        now is closed by close_bar()."""
        if not self.main or self.quiet or not sys.stderr.isatty():
            return None

        def bar(epoch):
            self.bar = progress_bar(epoch, epochs)
            return self.bar
        return bar

    def close_bar(self):
        if getattr(self, 'bar', None) is not None:
            self.bar.close()
            self.bar = None


def _count(n, noun):
    return f'{n} {noun}' + ('' if n == 1 else 's')


def summary(history, resumed_after, seconds, total_seconds, layout, in_sync, *, task, cfg, every_rank):
    """The metrics file's last object: the run as a whole."""
    import socket
    trained = sum(m.get('samples', m['samples_per_s'] * m['seconds']) for m in history[resumed_after:])
    return {'summary': True, 'epochs': len(history), 'requested_epochs': cfg.epochs, 'resumed_after': resumed_after,
            'test_acc': history[-1]['test_acc'] if history else None,
            'seconds': seconds, 'samples_per_s': trained / seconds if seconds else 0.0,
            'total_seconds': total_seconds, 'layout': layout.name, 'world_size': layout.size,
            'devices': len(layout.contexts), 'describe': layout.describe(every_rank),
            'lr': task.lr, 'batch_size': task.batch_size, 'seed': task.seed, 'drop_last': task.drop_last,
            'version': __version__, 'host': socket.gethostname(), 'started': started_at(total_seconds),
            'replicas_identical': in_sync,
            # the longest a rank waited between two marks once training began (watchdog.py)
            'longest_wait_s': layout.watchdog.longest if layout.watchdog else None}


def started_at(total_seconds):
    """The run's start as RFC 3339: now less its seconds."""
    start = datetime.datetime.now().astimezone() - datetime.timedelta(seconds=total_seconds)
    return start.isoformat(timespec='seconds')


def run_title(task, layout, epochs, summary=None):
    """The plot's title: where (a layout, or a summary's words for it) and what."""
    where = (f"{summary['layout']}, {summary['world_size']} worker(s) x {summary['devices']} device(s)"
             if summary else f'{layout.name}, {layout.size} worker(s) x {len(layout.contexts)} device(s)')
    return f"{where}; lr {_lr(task)}, global batch {task.batch_size}, {_count(epochs, 'epoch')}, seed {task.seed}"


def _lr(task):
    """The learning rate in words: its scaling and warmup where they are on."""
    o = task.optimizer
    scaled = f' ({o.scaling}: {o.scaled_lr(task.batch_size):g})' if o.scaling != 'none' else ''
    warm = f', warmup {o.warmup_epochs:g} epochs' if o.warmup_epochs else ''
    return f'{o.lr:g}{scaled}{warm}'


def evaluation(e, plot=None):
    """Print a result.Evaluated; plot: a PNG path for its confusion matrix."""
    print(f'checkpoint {e.checkpoint_dir} (epoch {e.epoch}): test acc {e.test_acc:.4f} ({e.correct}/{e.total})')
    print('per-class accuracy:')
    print(per_class_table(e.confusion, e.classes))
    print('confusion matrix (rows: true class, columns: predicted):')
    print(confusion_table(e.confusion, e.classes))
    if plot:
        plot_confusion(plot, e.confusion, e.classes, f'{e.checkpoint_dir}, epoch {e.epoch}: '
                                                     f'test acc {e.test_acc:.4f}')
        print(f'confusion matrix plot: {plot}')


def epoch_line(m):
    return (f"epoch {m['epoch']}, loss {m['train_loss']:.4f}, train acc {m['train_acc']:.3f}, "
            f"test acc {m['test_acc']:.3f}, {m['seconds']:.1f} s, {m['samples_per_s']:.0f} samples/s")


def _figure(**kw):
    """A matplotlib Figure outside pyplot: no backend is chosen and no global
    figure list kept, so a notebook's own plots stay as they are (Jupyter shows
    a Figure that a cell returns)."""
    from matplotlib.figure import Figure
    return Figure(**kw)


def plot_history(path, history, title=''):
    _save(path, history_figure(history, title))


def plot_confusion(path, matrix, classes, title=''):
    _save(path, confusion_figure(matrix, classes, title))


def _save(path, fig):
    """Raises OutputError naming the path if it cannot be written (a full disk)."""
    try:
        write_atomic(path, lambda p: fig.savefig(p, format='png', dpi=100))
    except (OSError, ValueError) as e:   # PIL and matplotlib raise either for a failed write
        raise OutputError(f'--plot {path}: cannot write ({getattr(e, "strerror", None) or e})') from None


def write_metrics(path, history, summary=None):
    """One JSON object a line: every epoch's metrics, then the summary if given.
    Raises OutputError naming the path if it cannot be written."""
    lines = [json.dumps(m) for m in history] + ([json.dumps(summary)] if summary else [])
    try:
        write_text(path, ''.join(line + '\n' for line in lines))
    except OSError as e:
        raise OutputError(f'--metrics {path}: cannot write epoch {history[-1]["epoch"] if history else 0} '
                          f'({e.strerror})') from None


def history_figure(history, title=''):
    """Loss, and train and test accuracy, by epoch (whole epochs on the axis)."""
    from matplotlib.ticker import MaxNLocator
    epochs = [m['epoch'] for m in history]
    fig = _figure(figsize=(9, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [m['train_loss'] for m in history], 'o-', label='train loss')
    ax1.set_xlabel('epoch'), ax1.set_ylabel('loss'), ax1.legend()
    ax2.plot(epochs, [m['train_acc'] for m in history], 'o-', label='train acc')
    ax2.plot(epochs, [m['test_acc'] for m in history], 's--', label='test acc')
    ax2.set_xlabel('epoch'), ax2.set_ylabel('accuracy'), ax2.legend()
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_figure(matrix, classes, title=''):
    """The (k, k) confusion matrix as counts, rows true, columns predicted."""
    k = len(classes)
    fig = _figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap='Blues')
    ax.set_xticks(range(k), classes, rotation=45, ha='right')
    ax.set_yticks(range(k), classes)
    ax.set_xlabel('predicted'), ax.set_ylabel('true')
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(matrix[i, j]), ha='center', va='center', fontsize=7,
                    color='white' if matrix[i, j] > matrix.max() / 2 else 'black')
    fig.colorbar(im, ax=ax, label='test samples')
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_table(matrix, classes):
    """Full class names: each column as wide as its name (and its counts)."""
    corner = 'true \\ pred'
    first = max(len(corner), *map(len, classes))
    widths = [max(len(c), len(str(int(matrix[:, j].max()))) if len(matrix) else 1) for j, c in enumerate(classes)]
    rows = [f'{corner:<{first}}  ' + ' '.join(f'{c:>{w}}' for c, w in zip(classes, widths))]
    for name, row in zip(classes, matrix):
        rows.append(f'{name:<{first}}  ' + ' '.join(f'{int(v):>{w}}' for v, w in zip(row, widths)))
    return '\n'.join(rows)


def per_class_table(matrix, classes):
    rows = []
    for i, (name, row) in enumerate(zip(classes, matrix)):
        total = row.sum()
        acc = row[i] / total if total else float('nan')
        rows.append(f'  {name:<{max(map(len, classes))}} {acc:.3f}  ({int(row[i])}/{int(total)})')
    return '\n'.join(rows)


def progress_bar(epoch, epochs):
    """A tqdm bar for one epoch (0-based); its update(step, total, loss_sum,
    samples) syncs with the device every 20 steps."""
    from tqdm import tqdm
    bar = tqdm(total=None, desc=f'epoch {epoch + 1}/{epochs}', unit='step', leave=False)

    def update(step, total, loss_sum, samples):
        """loss_sum: the step's summed loss on the first context, over its samples."""
        bar.total = total
        if step % 20 == 0 or step == total:
            # a sync, but only on a terminal and every 20 steps
            bar.set_postfix(loss=f'{loss_sum.asscalar() / samples:.4f}', refresh=False)
        bar.update(1)
        if step == total:
            bar.close()
    update.close = bar.close   # Log.close_bar: before a message, such as an interrupt's
    return update
