"""How a run ends when it fails: one line per job, and every rank stops.

An error that every rank holds (an agreed one, or a lone process's) is
printed by rank 0, and the ranks leave the job together. An error of one rank
alone is printed by that rank, which then ends the whole job (MPI_Abort, or
an immediate exit that the launcher turns into the end of every rank).
Survivors of a failed peer say so once, through rank 0, and so does a signal,
which a launcher forwards to every rank.
"""
import os
import signal
import sys
import time

from . import launchers, signals
from .errors import Agreed, Interrupted, PeerFailed, UserError


def fail(error, debug=False):
    """Say what ended the run, once per job, and end every rank (README: "Errors")."""
    layout = _started_layout()
    rank = layout.rank if layout else launchers.rank()
    alone = layout is None or layout.size == 1
    if layout is not None and layout.peer_failed(error):
        signum = signals.received()   # SIGTERM to every rank: some see a peer leave first
        error = Interrupted(signum, f'interrupted by {signal.Signals(signum).name}') if signum else \
            PeerFailed('another rank failed or was stopped; stopping')
    shared = alone or isinstance(error, (Agreed, PeerFailed))   # every rank has the same error
    if isinstance(error, BrokenPipeError):
        _silence_stdout()
        code = 141
    else:
        code = 130 if isinstance(error, KeyboardInterrupt) else getattr(error, 'exit_code', 1)
        signal_on_every_rank = isinstance(error, Interrupted)   # a launcher forwards it to all
        if rank == 0 or not (shared or signal_on_every_rank):
            _say(error, debug, '' if shared or signal_on_every_rank else f'rank {rank}: ')
    if layout is not None and not alone:
        if shared and not isinstance(error, PeerFailed):
            layout.barrier()          # rank 0's line is out before any rank exits
            layout.close()
        else:
            layout.abort(code)        # this rank alone: end every rank now
    elif layout is not None:
        layout.close()
    return code if layout is not None else pause_unless_rank0(code)


def _say(error, debug, prefix):
    if debug or not isinstance(error, (UserError, Interrupted, KeyboardInterrupt)):
        import traceback
        traceback.print_exception(error)
        return
    kind = 'error: ' if isinstance(error, UserError) else ''
    text = str(error) or 'interrupted by SIGINT'
    sys.stderr.write(f'distsoftmax: {kind}{prefix}{text}\n')
    sys.stderr.flush()


def _started_layout():
    layouts = sys.modules.get('distsoftmax.layout')
    return layouts.started[-1] if layouts and layouts.started else None


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
