"""What distsoftmax.train() and evaluate() return, on every rank."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from mxnet import nd


class _Predicts:
    def predict(self, images, batch=1000):
        """Class indices (n,) int64 for uint8 images (n, rows, cols), as the data set
        holds them (the model applies the 1/255 itself), on the first context."""
        ctx = self.net.collect_params().list_ctx()[0]
        images = np.asarray(images, dtype=np.uint8)
        out = [self.net(nd.array(images[i:i + batch], ctx=ctx, dtype='uint8')).argmax(axis=1).asnumpy()
               for i in range(0, len(images), batch)]
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


@dataclass
class Trained(_Predicts):
    """history: one dict an epoch, the rows of --metrics (epoch, train_loss,
    train_acc, test_acc, samples, seconds, samples_per_s; a resumed run's earlier
    epochs first); summary: the run as a whole (the metrics file's last row);
    checkpoint_dir: where the last epoch is kept, or None; net: the trained
    gluon Block (PixelDense), on this rank's contexts; task: what was trained."""
    history: List[dict]
    summary: dict
    checkpoint_dir: Optional[str]
    net: object = field(repr=False)
    task: object = field(repr=False)
    rank: int = 0

    @property
    def test_acc(self):
        return self.summary['test_acc']


@dataclass
class Evaluated(_Predicts):
    """A checkpoint's test accuracy: correct of total test samples; confusion:
    float64 (num_classes, num_classes) counts, rows the true class, columns the
    predicted one; classes: their names."""
    checkpoint_dir: str
    epoch: int
    correct: int
    total: int
    confusion: np.ndarray = field(repr=False)
    classes: Tuple[str, ...] = field(repr=False)
    net: object = field(repr=False)
    task: object = field(repr=False)
    rank: int = 0

    @property
    def test_acc(self):
        return self.correct / self.total

    @property
    def per_class_acc(self):
        """(num_classes,) float64: the share of each true class predicted right (nan if none)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.diag(self.confusion) / totals
