"""How a run ends when it fails: one line per job, and every rank stops.

An error that every rank holds (an agreed one, a lone process's, a signal
that the launcher forwards to all) is said by rank 0, and the ranks leave the
job together. An error of one rank alone is said by that rank, which then ends
the whole job (MPI_Abort, or an immediate exit that the launcher turns into
the end of every rank). Survivors of a failed peer say so once, through rank 0.
The CLI turns the outcome into an exit code; a library call raises it.
"""
import os
import signal
import sys
import time
import traceback

from . import launchers, report

SIGNAL_SPREAD = 0.5     # s
from .errors import Interrupted, PeerFailed, UserError


def public(error, session):
    """The error a user is told: a peer's failure seen through Horovod is PeerFailed
    (or the signal that every rank got), KeyboardInterrupt is SIGINT's Interrupted."""
    layout = session.layout
    if layout is not None and layout.peer_failed(error):
        signum = session.signals.first()  # SIGTERM to every rank: some see a peer leave first
        return Interrupted(signum, f'interrupted by {signal.Signals(signum).name}') if signum else \
            PeerFailed('another rank failed or was stopped; stopping')
    if isinstance(error, KeyboardInterrupt) and not isinstance(error, Interrupted):
        return Interrupted(signal.SIGINT, 'interrupted by SIGINT')
    return error


def end(error, session, debug=False):
    """Say what ended the run where it must be said, and end every rank as the
    error requires. Returns (the public error, its exit code)."""
    error = public(error, session)
    layout = session.layout
    rank = layout.rank if layout else launchers.rank()
    alone = layout is None or layout.size == 1
    held = alone or getattr(error, 'agreed', False) or isinstance(error, PeerFailed)  # by every rank
    if isinstance(error, BrokenPipeError):
        _silence_stdout()
        code = 141
    else:
        code = getattr(error, 'exit_code', 1)
        if isinstance(error, Interrupted) and not alone:
            speak, prefix = _signal_speaker(error, layout)
        else:
            speak, prefix = (rank == 0, '') if held else (True, f'rank {rank}: ')
        if speak and (session.cli or not held):   # a library call raises what it would say
            say(error, debug, prefix, stamp=session.timestamps)
    if layout is not None and not alone:
        if held and not isinstance(error, PeerFailed):
            layout.barrier()          # rank 0's line is out before any rank exits
            layout.close()
        else:
            layout.abort(code)        # this rank alone, a signal, or a peer gone: end every rank now
    elif layout is not None:
        layout.close()
    return error, code


def _signal_speaker(error, layout):
    """A launcher forwards a signal to every rank, and rank 0 says it for the job;
    a signal that reached another rank alone (a kill of its pid) is said by it.
    Returns (speak, prefix)."""
    if layout.rank == 0:
        return True, ''
    time.sleep(SIGNAL_SPREAD)   # a forwarded signal reaches the ranks a moment apart
    # rank 0 runs and got none: this one alone was signalled (rank 0 gone: it spoke, or will not)
    if layout.watchdog is not None and layout.watchdog.signal_of(0) == 0:
        return True, f'rank {layout.rank}: '
    return False, ''


def say(error, debug, prefix='', stamp=False):
    if debug or not isinstance(error, (UserError, Interrupted)):
        traceback.print_exception(error)
        return
    kind = 'error: ' if isinstance(error, UserError) else ''
    when = report.stamp() + ' ' if stamp else ''
    try:
        sys.stderr.write(f'{when}distsoftmax: {kind}{prefix}{error}\n')
        sys.stderr.flush()
    except (OSError, ValueError):
        pass   # stderr itself is gone: the exit code still says it


def pause_unless_rank0(code):
    # An error every rank found before any communicator exists: rank 0 prints it.
    # A launcher kills the job when the first rank exits non-zero, so the others
    # wait a moment for rank 0's line to be out. (A hack, owned here.)
    if code and launchers.rank() != 0:
        time.sleep(1)
    return code


def _silence_stdout():
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
