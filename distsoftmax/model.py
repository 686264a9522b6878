"""The seed chapter's model: Dense(10) on x/255, softmax cross-entropy."""
import mxnet as mx
from mxnet import gluon, init
from mxnet.gluon import nn


class PixelDense(nn.Dense):
    """nn.Dense(10) on x/255, fed raw uint8 pixels x of shape (batch, 28, 28).

    W(x/255) + b is computed as (Wx)/255 + b: one multiply per output (10 a
    sample) instead of one per pixel (784). The parameters mean what a plain
    Dense on x/255 would learn (tests/test_model.py compares the two)."""

    def hybrid_forward(self, F, x, weight, bias):
        wx = F.FullyConnected(F.cast(x, 'float32'), weight, no_bias=True,
                              num_hidden=self._units, flatten=True)
        return F.broadcast_add(wx * (1 / 255), bias)


def build_net(seed, contexts):
    """Dense(10) on 784 inputs, weights from Normal(sigma=0.01), on every context."""
    mx.random.seed(seed)
    net = PixelDense(10, in_units=784)
    net.initialize(init.Normal(sigma=0.01), ctx=contexts)  # drawn on the CPU, copied to each context
    return net


class Objective(gluon.HybridBlock):
    """uint8 images (b, 28, 28) and float32 labels (b,) in; the summed loss and the
    correct count out (float32 scalars), in one graph."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def hybrid_forward(self, F, images, labels):
        out = self.net(images)
        return F.sum(self.loss(out, labels)), F.sum(F.argmax(out, axis=1) == labels)
