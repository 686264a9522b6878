"""The model is the seed chapter's Dense(10) on x/255, computed another way."""
import numpy as np
import pytest

from distsoftmax import data, model
from distsoftmax.task import Task


def test_objective_matches_the_textbook_formulation():
    """Dense(10) + SoftmaxCrossEntropyLoss on x/255, as the seed chapter computes it."""
    import mxnet as mx
    from mxnet import gluon, nd
    net = model.build_net(Task(), [mx.cpu()])
    assert isinstance(net, gluon.nn.Dense) and net.weight.shape == (10, 784)
    w = net.weight.data().asnumpy()
    assert abs(w.std() - 0.01) < 0.001 and abs(w.mean()) < 0.001
    # the textbook's model with the same parameters, fed x/255
    plain = gluon.nn.Dense(10, in_units=784)
    plain.initialize(ctx=mx.cpu())
    plain.weight.set_data(net.weight.data())
    plain.bias.set_data(nd.random.normal(shape=(10,)))
    net.bias.set_data(plain.bias.data())
    d = data.synthetic(0, 64)
    x, y = nd.array(d.train_images, dtype='uint8'), nd.array(d.train_labels)
    out = plain(x.astype('float32') / 255)
    assert np.allclose(net(x).asnumpy(), out.asnumpy(), rtol=1e-5, atol=1e-6)
    loss, correct = model.Objective(net)(x, y)
    expect = gluon.loss.SoftmaxCrossEntropyLoss()(out, y).sum().asscalar()
    assert loss.asscalar() == pytest.approx(expect, rel=1e-6)
    assert correct.asscalar() == (out.argmax(axis=1) == y).sum().asscalar()
    # and the same gradients
    from mxnet import autograd
    for block in (net, plain):
        with autograd.record():
            lossv = gluon.loss.SoftmaxCrossEntropyLoss()(
                block(x) if block is net else block(x.astype('float32') / 255), y).sum()
        lossv.backward()
    assert np.allclose(net.weight.grad().asnumpy(), plain.weight.grad().asnumpy(), rtol=1e-4, atol=1e-6)
    assert np.allclose(net.bias.grad().asnumpy(), plain.bias.grad().asnumpy(), rtol=1e-4, atol=1e-6)
