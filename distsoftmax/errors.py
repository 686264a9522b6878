"""The errors a run can end with, each with its exit code (README: "Errors and exit codes").

Public: `distsoftmax.UserError` and its family are what `distsoftmax.train()` and
`evaluate()` raise; the CLI prints each as one line, `distsoftmax: error:
MESSAGE`, and exits with `exit_code` (`--debug` shows the traceback instead).
Under a launcher every rank raises the same class with the same message.
"""


class UserError(Exception):
    """Bad input or environment, or a run that cannot go on: one line, exit 1."""
    exit_code = 1


class UsageError(UserError):
    """A flag, a keyword, or a combination of them that cannot work: exit 2, as argparse does."""
    exit_code = 2


class DataError(UserError):
    """A data file is missing, corrupt or not the data set a checkpoint was trained on."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, in use, or made with other math flags or
    data; or one could not be written (a full disk)."""


class OutputError(UserError):
    """A metrics file, plot or log stream could not be written."""


class LayoutError(UserError):
    """The requested layout cannot start here, or the replicas disagree."""


class Diverged(UserError):
    """The loss turned NaN or inf."""


class PeerFailed(UserError):
    """Another rank failed, was stopped or stalled; this one stops too."""


class Stalled(PeerFailed):
    """No progress within --timeout: a rank stopped, or the network was cut."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGUSR1 arrived; the run stopped after the current step.

    A KeyboardInterrupt, so that a notebook's kernel interrupt ends the cell as
    Ctrl-C does. `exit_code` is 128 + the signal number, as a shell reports a
    process killed by it: 130 for SIGINT, 143 for SIGTERM; SIGUSR1 (Slurm's
    warning before a time limit) is 138, a graceful stop."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


# every class a rank's error may be agreed as, by name (layout.agree sends the name)
BY_NAME = {c.__name__: c for c in (UserError, UsageError, DataError, CheckpointError, OutputError,
                                   LayoutError, Diverged, PeerFailed, Stalled)}


def agreed(name, message, exit_code):
    """The error of the first failing rank, rebuilt on every rank: same class,
    message and exit code."""
    error = BY_NAME.get(name, UserError)(message)
    error.exit_code = exit_code
    return error
