"""The errors a run can end with, each with its exit code (README: "Exit codes").

The CLI prints each as one line, `distsoftmax: error: MESSAGE`, and exits with
`exit_code`; `--debug` shows the traceback instead.
"""


class UserError(Exception):
    """Bad input or environment: one line, no traceback, exit 1."""
    exit_code = 1


class UsageError(UserError):
    """A flag, or a combination of flags, that cannot work: exit 2, as argparse does."""
    exit_code = 2


class DataError(UserError):
    """A data file is missing, corrupt or not the data set a checkpoint was trained on."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, in use, or made with other math flags or data."""


class LayoutError(UserError):
    """The requested layout cannot start here."""


class Diverged(UserError):
    """The loss turned NaN or inf."""


class PeerFailed(UserError):
    """Another rank failed or was stopped; this one stops too."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the run stopped after the current step.

    Exit 128 + the signal number, as a shell reports a process killed by it:
    130 for SIGINT, 143 for SIGTERM."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.exit_code = 128 + signum


class Agreed(UserError):
    """The error of the first failing rank, raised on every rank after the
    layout's agree(): every rank exits with its code, rank 0 prints it."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code
