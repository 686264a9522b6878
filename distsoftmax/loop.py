"""The training loop. It never asks which layout it runs in.

The data sits on each context as uint8; the samples of a block of steps are
gathered there at once (nd.take into buffers reused all epoch); no DataLoader,
no per-sample Python, and no host sync per step: per-step loss and accuracy
stay on the device and are read once per epoch.
"""
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, nd

from .errors import Diverged
from .model import Objective
from .shard import eval_range

GATHER_STEPS = 16   # steps whose samples one take() gathers
EVAL_CHUNK = 500    # test samples per forward: bounds the float32 copies


class DeviceData:
    """The data set, copied once to each of this worker's contexts.

    Images stay uint8 (n, rows, cols); labels become float32 (n,), as the loss takes them."""

    def __init__(self, data, contexts):
        self.n_train, self.n_test = len(data.train_labels), len(data.test_labels)
        self.train_x = _copies(data.train_images, contexts, 'uint8')
        self.train_y = _copies(data.train_labels, contexts, 'float32')
        self.test_x = _copies(data.test_images, contexts, 'uint8')
        self.test_y = _copies(data.test_labels, contexts, 'float32')


def _copies(host, contexts, dtype):
    """One NDArray per context. cpu(0) shares the host array's memory (no copy);
    other contexts get their own copy."""
    host = np.ascontiguousarray(host, dtype=dtype)
    return [nd.from_numpy(host, zero_copy=True) if c == mx.cpu(0) else nd.array(host, ctx=c, dtype=dtype)
            for c in contexts]


class _Gather:
    """The samples of up to GATHER_STEPS steps of one context, in buffers reused
    every block: a fresh few-MB array per block costs an mmap and page faults."""

    def __init__(self, x, y, per_step):
        self.x, self.y = x, y
        rows = GATHER_STEPS * per_step
        self.bx = nd.empty((rows,) + x.shape[1:], ctx=x.context, dtype=x.dtype)
        self.by = nd.empty((rows,), ctx=y.context, dtype=y.dtype)

    def block(self, idx):
        """idx: int32 (steps, per_step). Returns the per-step (images, labels) views."""
        rows, b = idx.shape[0] * idx.shape[1], idx.shape[1]
        flat = idx.reshape(-1)
        bx, by = self.bx[:rows], self.by[:rows]
        nd.take(self.x, flat, out=bx)
        nd.take(self.y, flat, out=by)
        return [(bx[j * b:(j + 1) * b], by[j * b:(j + 1) * b]) for j in range(idx.shape[0])]


def _blocks(*, layout, data, plan, seed, epoch):
    """Per step, the (images, labels) of every context: full steps in gathered
    blocks, then the tail, if any."""
    full, tail = plan.worker_indices(seed, epoch, layout.rank)
    if len(full):
        parts = layout.split(nd.array(full, dtype='int32'), batch_axis=1)   # (steps, b) per context
        gathers = [_Gather(x, y, p.shape[1]) for x, y, p in zip(data.train_x, data.train_y, parts)]
        for s0 in range(0, len(full), GATHER_STEPS):
            blocks = [g.block(p[s0:s0 + GATHER_STEPS]) for g, p in zip(gathers, parts)]
            yield from zip(*blocks)
    if len(tail):
        parts = layout.split(nd.array(tail, dtype='int32'))
        yield [(nd.take(x, p), nd.take(y, p)) for x, y, p in zip(data.train_x, data.train_y, parts)]


def train_epoch(*, objective, trainer, layout, data, plan, seed, epoch, signals, progress=None):
    """One epoch; returns (loss sum, correct count, each step's mean loss per sample)
    over every worker, exact, float64.

    Raises Diverged on a NaN or inf loss, errors.Interrupted when signals caught one."""
    per_ctx = [[] for _ in layout.contexts]
    total = len(plan.step_sizes)
    for step, batches in enumerate(_blocks(layout=layout, data=data, plan=plan, seed=seed, epoch=epoch), 1):
        signals.check(epoch)
        layout.mark(f'epoch {epoch + 1}, step {step} of {total}', step=True)
        with autograd.record():
            outs = [objective(x, y) for x, y in batches]
        for out, kept in zip(outs, per_ctx):
            out[0].backward()
            kept.append(out)
        trainer.step(plan.batch_size)   # the global batch, the tail's too: the textbook's rule
        if progress:
            progress(step, total, outs[0][0], batches[0][1].shape[0])
    # the epoch's only host sync: per-step sums, summed over contexts and workers
    per_step = sum(nd.stack(*[nd.stack(*column) for column in zip(*kept)], axis=1)
                   .as_in_context(mx.cpu()).asnumpy().astype(np.float64) for kept in per_ctx)
    layout.mark(f"the allreduce of epoch {epoch + 1}'s loss and accuracy")
    per_step = layout.allreduce(per_step)
    bad = np.flatnonzero(~np.isfinite(per_step[:, 0]))
    if len(bad):
        raise Diverged(f'diverged at epoch {epoch + 1}, step {bad[0] + 1}: lower --lr')
    return per_step[:, 0].sum(), per_step[:, 1].sum(), np.ravel(per_step[:, 0]) / np.asarray(plan.step_sizes)


def predict_counts(net, data, layout, *, num_classes, confusion=False):
    """Correct test predictions over every worker (exact, float64) and, if asked,
    the (num_classes, num_classes) float64 confusion matrix (rows: true class).
    Contexts beyond the test set's size get no samples."""
    lo, hi = eval_range(data.n_test, layout.rank, layout.size)
    bounds = np.linspace(lo, hi, len(layout.contexts) + 1).astype(int)
    hits, matrix = [], np.zeros((num_classes, num_classes), np.float64)
    for x, y, a, b in zip(data.test_x, data.test_y, bounds[:-1], bounds[1:]):
        for start in range(a, b, EVAL_CHUNK):
            i = nd.arange(start, min(start + EVAL_CHUNK, b), dtype='int32', ctx=x.context)
            pred, truth = net(nd.take(x, i)).argmax(axis=1), nd.take(y, i)
            hits.append((pred == truth).sum())
            if confusion:
                np.add.at(matrix, (truth.asnumpy().astype(int), pred.asnumpy().astype(int)), 1)
    layout.mark('the evaluation on the test set')
    correct = sum(h.asscalar() for h in hits)   # one sync per chunk, after all are queued
    total = layout.allreduce(np.concatenate([[correct], matrix.ravel()]))
    return total[0], total[1:].reshape(num_classes, num_classes)


def fit(*, net, trainer, layout, data, plan, task, epochs, signals, progress=None):
    """Train the epochs (a range of 0-based indices); yield for each (metrics,
    step_loss): metrics the dict of epoch (1-based), train_loss (mean per
    sample), train_acc, test_acc, samples, seconds (wall, evaluation included)
    and samples_per_s; step_loss float64 (steps,), each step's mean loss."""
    objective = Objective(net)
    objective.hybridize(static_alloc=True, static_shape=True)
    for epoch in epochs:
        t0 = time.perf_counter()
        bar = progress(epoch) if progress else None
        loss_sum, correct, step_loss = train_epoch(objective=objective, trainer=trainer, layout=layout, data=data,
                                        plan=plan, seed=task.seed, epoch=epoch, signals=signals, progress=bar)
        test_correct, _ = predict_counts(net, data, layout, num_classes=task.data.num_classes)
        seconds, n = time.perf_counter() - t0, plan.samples_per_epoch
        yield {'epoch': epoch + 1, 'train_loss': loss_sum / n, 'train_acc': correct / n,
               'test_acc': test_correct / data.n_test, 'samples': n, 'seconds': seconds,
               'samples_per_s': n / seconds}, step_loss
