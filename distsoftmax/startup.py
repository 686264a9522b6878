"""Start-up and exit tricks, fenced here: each buys part of the whole-process
time or the RSS budget (bench/README.md has the measurements). Every call
applies prepare(); only the command (cli.run) exits quickly, and
DISTSOFTMAX_NO_QUICK_EXIT=1 turns that off (to debug exit handlers, or leaks
with the interpreter's own teardown).
"""
import atexit
import os
import sys
import warnings


def prepare():
    """Before mxnet loads: one OpenMP thread, and Python's own distutils."""
    one_thread()
    python_distutils()


def one_thread():
    """OMP_NUM_THREADS=1 unless set: this model's ops (a 256x784 by 784x10 product
    at most) are too small to split, and extra threads only contend. Read when
    mxnet and its OpenBLAS load."""
    os.environ.setdefault('OMP_NUM_THREADS', '1')


def python_distutils():
    """mxnet imports distutils.version as it loads; setuptools' import hook would
    answer with its own copy, importing all of setuptools first. Python 3.11's
    own module does the job; the hook is put back at once."""
    hooks = [f for f in sys.meta_path if type(f).__module__ == '_distutils_hack']
    if not hooks or 'distutils' in sys.modules:
        return
    for f in hooks:
        sys.meta_path.remove(f)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            import distutils.version  # noqa: F401
    except ImportError:
        pass  # no distutils in this Python: setuptools' copy it is
    finally:
        sys.meta_path[:0] = hooks


def quick_exit(code):
    """After a clean run whose layout has shut down: run the exit handlers
    (mxnet's, matplotlib's, Horovod's), flush, and skip the interpreter's
    teardown of mxnet (freeing its engine and thousands of generated functions)."""
    if os.environ.get('DISTSOFTMAX_NO_QUICK_EXIT') or 'mxnet' not in sys.modules:
        return code
    try:
        sys.modules['mxnet'].nd.waitall()
    except Exception:   # noqa: B902: a failed run's pending error, already said
        pass
    atexit._run_exitfuncs()  # private, but the documented behaviour of a normal exit
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = code or 1  # a closed pipe: say so by the exit code, as the normal exit would
    os._exit(code)


def flush():
    """Flush stdout and stderr; a stream that cannot be written is not a reason to fail here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def exit_now(code):
    """Leave at once, flushed, without the interpreter's teardown: a rank that
    fails alone must not wait on peers in Horovod's or mxnet's exit handlers."""
    flush()
    os._exit(code)
