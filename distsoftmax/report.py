"""What rank 0 shows and writes: epoch lines, progress, metrics, plots, tables."""
import json
import os
import sys
import tempfile

from .data import CLASSES
from .errors import UserError


def check_output_file(flag, path):
    """An output path that cannot be written fails before any training."""
    if os.path.isdir(path):
        raise UserError(f'{flag} {path}: is a directory, expected a file name')
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserError(f'{flag} {path}: directory {parent} does not exist')
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix='.distsoftmax-probe'):
            pass
    except OSError as e:
        raise UserError(f'{flag} {path}: cannot write in {parent} ({e.strerror})') from None


def write_atomic(path, write):
    """write(tmp_path), then rename: readers never see half a file."""
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def epoch_line(m):
    return (f"epoch {m['epoch']}, loss {m['train_loss']:.4f}, train acc {m['train_acc']:.3f}, "
            f"test acc {m['test_acc']:.3f}, {m['seconds']:.1f} s, {m['samples_per_s']:.0f} samples/s")


def write_metrics(path, history, summary=None):
    lines = [json.dumps(m) for m in history] + ([json.dumps(summary)] if summary else [])
    write_atomic(path, lambda p: open(p, 'w').write(''.join(line + '\n' for line in lines)))


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_history(path, history):
    plt = _pyplot()
    epochs = [m['epoch'] for m in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [m['train_loss'] for m in history], 'o-', label='train loss')
    ax1.set_xlabel('epoch'), ax1.set_ylabel('loss'), ax1.legend()
    ax2.plot(epochs, [m['train_acc'] for m in history], 'o-', label='train acc')
    ax2.plot(epochs, [m['test_acc'] for m in history], 's--', label='test acc')
    ax2.set_xlabel('epoch'), ax2.set_ylabel('accuracy'), ax2.legend()
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, format='png', dpi=100))
    plt.close(fig)


def plot_confusion(path, matrix):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(matrix, cmap='Blues')
    ax.set_xticks(range(10), CLASSES, rotation=45, ha='right')
    ax.set_yticks(range(10), CLASSES)
    ax.set_xlabel('predicted'), ax.set_ylabel('true')
    for i in range(10):
        for j in range(10):
            ax.text(j, i, int(matrix[i, j]), ha='center', va='center', fontsize=7,
                    color='white' if matrix[i, j] > matrix.max() / 2 else 'black')
    fig.colorbar(im)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, format='png', dpi=100))
    plt.close(fig)


def confusion_table(matrix):
    short = [c[:8] for c in CLASSES]
    rows = ['true \\ pred  ' + ' '.join(f'{c:>8}' for c in short)]
    for name, row in zip(CLASSES, matrix):
        rows.append(f'{name[:12]:<12} ' + ' '.join(f'{int(v):>8}' for v in row))
    return '\n'.join(rows)


def per_class_table(matrix):
    rows = []
    for name, row, i in zip(CLASSES, matrix, range(10)):
        total = row.sum()
        acc = row[i] / total if total else float('nan')
        rows.append(f'  {name:<12} {acc:.3f}  ({int(row[i])}/{int(total)})')
    return '\n'.join(rows)


def progress_bar(enabled, epoch, epochs):
    """A per-epoch tqdm bar on a terminal; None otherwise (no host syncs then)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    bar = tqdm(total=None, desc=f'epoch {epoch + 1}/{epochs}', unit='step', leave=False)

    def update(step, total, loss):
        bar.total = total
        if step % 20 == 0 or step == total:
            # a sync, but only on a terminal and every 20 steps
            bar.set_postfix(loss=f'{loss.asscalar():.1f}', refresh=False)
        bar.update(1)
        if step == total:
            bar.close()
    return update
