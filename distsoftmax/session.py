"""What one call of train() or evaluate() owns, and gives back when it ends:
its signal handlers, the layout it joined, the checkpoint lock it holds.

No module keeps state between calls: a second call in the same process starts
from nothing, and the CLI is one such call (cli=True lets it end the process).
"""
import contextlib

from .signals import Signals


class Session(contextlib.ExitStack):
    """with Session(cli=False) as session: job.train(cfg, session)

    cli: started as the command, so it may end the process (a rank's lone
    failure, the quick exit) and shut the communicator down for good; a library
    call leaves the process and Horovod's or MPI's communicator to the caller."""

    def __init__(self, cli=False):
        super().__init__()
        self.cli = cli
        self.signals = Signals()
        self.layout = None          # set by layout.start() once this process joined a job
        self.timestamps = False     # the run's --timestamps: its error line is stamped too

    def __enter__(self):
        super().__enter__()
        self.signals.install()
        self.callback(self.signals.restore)
        return self

    def hold(self, lock):
        """Release lock (a filelock.FileLock, acquired) when the call ends."""
        self.callback(lock.release)
