"""SIGINT and SIGTERM set a flag that the training loop reads every step, so a
run stops between two steps, never inside one, and no signal is lost. A
second signal ends the process at once, as Python's default would."""
import os
import signal

from .errors import Interrupted

_received = []


def install():
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _note)


def _note(signum, frame):
    if _received:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    _received.append(signum)


def received():
    return _received[0] if _received else None


def check(epoch):
    """Raise errors.Interrupted if a signal arrived; epoch: the 0-based epoch running."""
    if _received:
        name = signal.Signals(_received[0]).name
        raise Interrupted(_received[0], f'interrupted by {name} in epoch {epoch + 1}')
