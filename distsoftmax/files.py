"""Writing files so that a reader never sees half of one."""
import os
import tempfile

from .errors import OutputError, UserError


def write_atomic(path, write, durable=False):
    """write(tmp_path), then rename over path. durable: fsync the file first, so
    that a crash of the machine, not only of the process, leaves old or new."""
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        write(tmp)
        if durable:
            with open(tmp, 'rb+') as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text, durable=False):
    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    write_atomic(path, write, durable)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _writable(directory):
    """Make directory if missing and write a probe file in it; raises OSError."""
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix='.distsoftmax-probe'):
        pass


def check_output_dir(flag, path):
    """An output directory that cannot be written fails before any training; it is
    made if missing. Raises OutputError naming the flag."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f'{flag} {path}: exists and is not a directory')
    try:
        _writable(path)
    except OSError as e:
        raise OutputError(f'{flag} {path}: cannot write there ({e.strerror})') from None


def check_output_file(flag, path):
    """An output file that cannot be written fails before any training; its
    directory is made if missing. Raises UserError naming the flag."""
    if os.path.isdir(path):
        raise UserError(f'{flag} {path}: is a directory, expected a file name')
    parent = os.path.dirname(os.path.abspath(path))
    try:
        _writable(parent)
    except OSError as e:
        raise UserError(f'{flag} {path}: cannot write in {parent} ({e.strerror})') from None
