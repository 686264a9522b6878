"""Data-parallel softmax regression on Fashion-MNIST with MXNet Gluon."""
__version__ = "0.1.0"
