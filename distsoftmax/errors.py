"""The errors a user can cause. The CLI prints each as one line and exits 1."""


class UserError(Exception):
    """Bad input or environment: one line, no traceback."""


class DataError(UserError):
    """A data file is missing, corrupt or not Fashion-MNIST."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or made with other math flags."""


class LayoutError(UserError):
    """The requested layout cannot start here."""


class Diverged(UserError):
    """The loss turned NaN or inf."""
