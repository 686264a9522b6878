"""The model and the training loop. It never asks which layout it runs in.

Speed by design: the data sits on each context as uint8, and the samples of
a block of steps are gathered there at once (nd.take); no DataLoader, no
per-sample Python, and no host sync per step: per-step loss and accuracy stay
on the device and are read once per epoch.
"""
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from . import shard
from .errors import Diverged


class PixelDense(nn.Dense):
    """nn.Dense(10) on x/255, fed raw uint8 pixels x.

    W(x/255) + b is computed as (Wx)/255 + b: one multiply per output (10 a
    sample) instead of one per pixel (784), the largest op of a step after the
    matmul. The parameters mean what a plain Dense on x/255 would learn."""

    def hybrid_forward(self, F, x, weight, bias):
        wx = F.FullyConnected(F.cast(x, 'float32'), weight, no_bias=True,
                              num_hidden=self._units, flatten=True)
        return F.broadcast_add(wx * (1 / 255), bias)


def build_net(seed, contexts):
    """The seed chapter's model: Dense(10) on 784 inputs, weights from Normal(0.01)."""
    mx.random.seed(seed)
    net = PixelDense(10, in_units=784)
    net.initialize(init.Normal(sigma=0.01), ctx=contexts)  # drawn on the CPU, copied to each context
    return net


class Objective(gluon.HybridBlock):
    """uint8 images and labels in; summed loss and correct count out, in one graph."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def hybrid_forward(self, F, images, labels):
        out = self.net(images)
        return F.sum(self.loss(out, labels)), F.sum(F.argmax(out, axis=1) == labels)


class DeviceData:
    """The data set, copied once to each of this worker's contexts."""

    def __init__(self, data, contexts):
        self.n_train, self.n_test = len(data.train_labels), len(data.test_labels)
        self.train_x = _on(data.train_images, contexts, 'uint8')
        self.train_y = _on(data.train_labels, contexts, 'float32')
        self.test_x = _on(data.test_images, contexts, 'uint8')
        self.test_y = _on(data.test_labels, contexts, 'float32')


def _on(host, contexts, dtype):
    """One NDArray per context. cpu(0) shares the host array's memory (no copy
    of the 47 MB of images); other contexts get their own copy."""
    host = np.ascontiguousarray(host, dtype=dtype)
    return [nd.from_numpy(host, zero_copy=True) if c == mx.cpu(0) else nd.array(host, ctx=c, dtype=dtype)
            for c in contexts]


GATHER_STEPS = 16  # steps whose samples one take() gathers: 2 ops a step fewer, 3 MB a block


def train_epoch(objective, trainer, dev, layout, batch_size, seed, epoch, progress=None, fault=None):
    """One epoch; returns exact (loss sum, correct, samples) over all workers."""
    parts = layout.size * len(layout.contexts)
    perm = shard.permutation(dev.n_train, seed, epoch)
    full, tail = shard.worker_indices(perm, batch_size, parts, layout.rank, layout.size)
    # a segment: per context, (steps, per-context batch) indices, loaded once per epoch
    segments = []
    if len(full):
        segments.append(layout.split(nd.array(full, dtype='int32'), batch_axis=1))
    if len(tail):
        segments.append([i.reshape(1, -1) for i in layout.split(nd.array(tail, dtype='int32'))])
    sizes = shard.step_sizes(dev.n_train, batch_size, parts)
    stats = [[] for _ in layout.contexts]
    step = 0
    for segment in segments:
        steps = segment[0].shape[0]
        for s0 in range(0, steps, GATHER_STEPS):
            k = min(GATHER_STEPS, steps - s0)
            # one gather per block of steps and context; a step then slices a view
            blocks = [(nd.take(x, idx[s0:s0 + k].reshape(-1)), nd.take(y, idx[s0:s0 + k].reshape(-1)),
                       idx.shape[1]) for x, y, idx in zip(dev.train_x, dev.train_y, segment)]
            for j in range(k):
                with autograd.record():
                    outs = [objective(bx[j * b:(j + 1) * b], by[j * b:(j + 1) * b]) for bx, by, b in blocks]
                for out, st in zip(outs, stats):
                    out[0].backward()
                    st.append(out)
                trainer.step(sizes[step])  # global count: every layout divides by the same n
                step += 1
                if fault:
                    fault.step(epoch, step)
                if progress:
                    progress(step, len(sizes), stats[0][-1][0])
    # the epoch's only host sync: per-step sums, summed over contexts and workers
    per_step = sum(nd.stack(*[nd.stack(*col) for col in zip(*st)], axis=1)
                   .as_in_context(mx.cpu()).asnumpy().astype(np.float64) for st in stats)
    per_step = layout.allreduce(per_step)
    bad = np.flatnonzero(~np.isfinite(per_step[:, 0]))
    if len(bad):
        raise Diverged(f'diverged at epoch {epoch + 1}, step {bad[0] + 1}: lower --lr')
    return per_step[:, 0].sum(), per_step[:, 1].sum(), float(sum(sizes))


EVAL_CHUNK = 500  # test samples per forward: bounds the float32 copies (peak RSS)


def predict_counts(net, dev, layout, confusion=False):
    """Correct test predictions over all workers (exact), optionally the confusion matrix."""
    lo, hi = shard.eval_range(dev.n_test, layout.rank, layout.size)
    correct, matrix = 0.0, np.zeros((10, 10), np.float64)
    if hi > lo:
        idx = layout.split(nd.arange(lo, hi, dtype='int32'), even_split=False)
        hits = []
        for x, y, part in zip(dev.test_x, dev.test_y, idx):
            for i in (part[k:k + EVAL_CHUNK] for k in range(0, part.shape[0], EVAL_CHUNK)):
                pred = net(nd.take(x, i)).argmax(axis=1)
                truth = nd.take(y, i)
                hits.append((pred == truth).sum())
                if confusion:
                    np.add.at(matrix, (truth.asnumpy().astype(int), pred.asnumpy().astype(int)), 1)
        correct = sum(h.asscalar() for h in hits)  # one sync per chunk, after all are queued
    total = layout.allreduce(np.concatenate([[correct], matrix.ravel()]))
    return total[0], dev.n_test, total[1:].reshape(10, 10)


def fit(net, layout, dev, args, start_epoch=0, trainer=None, on_epoch=None, progress=None, fault=None):
    """Train from start_epoch to args.epochs; on_epoch(epoch, metrics) after each."""
    objective = Objective(net)
    objective.hybridize(static_alloc=True, static_shape=True)
    trainer = trainer or layout.trainer(net.collect_params(), args.lr, args.fp16_allreduce)
    for epoch in range(start_epoch, args.epochs):
        t0 = time.perf_counter()
        bar = progress(epoch) if progress else None
        loss_sum, correct, n = train_epoch(objective, trainer, dev, layout, args.batch_size,
                                           args.seed, epoch, bar, fault)
        test_correct, test_n, _ = predict_counts(net, dev, layout)
        seconds = time.perf_counter() - t0
        metrics = {'epoch': epoch + 1, 'train_loss': loss_sum / n, 'train_acc': correct / n,
                   'test_acc': test_correct / test_n, 'seconds': seconds,
                   'samples_per_s': n / seconds}
        if on_epoch:
            on_epoch(epoch + 1, metrics, trainer)
    return trainer
