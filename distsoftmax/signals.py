"""Signals for the duration of one call: SIGINT, SIGTERM and SIGUSR1 set a flag
that the training loop reads every step, so a run stops between two steps,
never inside one, and no signal is lost. A second one goes to the handler that
was there before the call (Python's KeyboardInterrupt for SIGINT, the default
end of the process for SIGTERM). Handlers are put back when the call ends."""
import signal
import threading

from .errors import Interrupted

# SIGUSR1: what Slurm's --signal=USR1@T sends before a job's time limit
CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class Signals:
    def __init__(self):
        self.received = []
        self._before = {}

    def install(self):
        """Catch the signals until restore(); only the main thread can (elsewhere: a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in CAUGHT:
            self._before[signum] = signal.signal(signum, self._note)

    def _note(self, signum, frame):
        if self.received:                       # a second signal: as if we were not here
            before = self._before.get(signum, signal.SIG_DFL)
            signal.signal(signum, before)
            signal.raise_signal(signum)
            return
        self.received.append(signum)

    def restore(self):
        for signum, handler in self._before.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._before.clear()

    def first(self):
        return self.received[0] if self.received else None

    def check(self, epoch):
        """Raise errors.Interrupted if a signal arrived; epoch: the 0-based epoch running."""
        if self.received:
            signum = self.received[0]
            raise Interrupted(signum, f'interrupted by {signal.Signals(signum).name} in epoch {epoch + 1}')
