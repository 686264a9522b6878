"""Data-parallel softmax regression on Fashion-MNIST with MXNet Gluon.

distsoftmax.train(**flags) and distsoftmax.evaluate(**flags) run the CLI's
commands from Python (api.py); the errors they raise are below. Importing the
package loads neither mxnet nor numpy: a run does.
"""
from .errors import (CheckpointError, DataError, Diverged, Interrupted, LayoutError, OutputError,  # noqa: F401
                     PeerFailed, Stalled, UsageError, UserError)

__version__ = "0.1.0"
__all__ = ['train', 'evaluate', 'Task', 'UserError', 'UsageError', 'DataError', 'CheckpointError',
           'OutputError', 'LayoutError', 'Diverged', 'PeerFailed', 'Stalled', 'Interrupted']


def __getattr__(name):
    # late, so that `import distsoftmax` (and the CLI's start) stays light
    if name in ('train', 'evaluate'):
        from . import api
        return getattr(api, name)
    if name == 'Task':
        from .task import Task
        return Task
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
