"""The seed chapter's model: Dense(num_classes) on x/255, softmax cross-entropy."""
import mxnet as mx
from mxnet import gluon, init
from mxnet.gluon import nn


class PixelDense(nn.Dense):
    """nn.Dense(units) on x/255, fed raw uint8 pixels x of shape (batch, rows, cols).

    W(x/255) + b is computed as (Wx)/255 + b: one multiply per output instead of
    one per pixel. The parameters mean what a plain Dense on x/255 would learn
    (tests/test_model.py compares the two), so model.params loads into
    `nn.Dense(units, in_units=rows*cols)` fed x/255."""

    def hybrid_forward(self, F, x, weight, bias):
        wx = F.FullyConnected(F.cast(x, 'float32'), weight, no_bias=True,
                              num_hidden=self._units, flatten=True)
        return F.broadcast_add(wx * (1 / 255), bias)


def build_net(task, contexts):
    """task.model(task.data), weights from Normal(task.init_sigma) drawn from task.seed
    on the CPU and copied to every context."""
    mx.random.seed(task.seed)
    net = task.model(task.data)
    net.initialize(init.Normal(sigma=task.init_sigma), ctx=contexts)
    return net


class Objective(gluon.HybridBlock):
    """uint8 images (b, rows, cols) and float32 labels (b,) in; the summed loss and
    the correct count out (float32 scalars), in one graph."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def hybrid_forward(self, F, images, labels):
        out = self.net(images)
        return F.sum(self.loss(out, labels)), F.sum(F.argmax(out, axis=1) == labels)
