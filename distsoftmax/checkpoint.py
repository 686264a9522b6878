"""Checkpoints that survive a crash at any moment, belong to one run, and never unpickle.

DIR after epoch E:
  epoch-000E/model.params    Gluon's save_parameters format
  epoch-000E/trainer.states  MXNet's NDArray format (Trainer.save_states would pickle)
  epoch-000E/state.json      that epoch's state (a checkpoint of its own: --resume,
                             --init-from and evaluate take the directory)
  state.json                 written once the epoch directory is whole: the epoch, the
                             math flags and the data's identity, the metrics so far,
                             the path and SHA-256 of both files
  model.params, trainer.states   then the same files (hard links), for users
  .lock, .lock.owner         held by rank 0 while a run uses DIR
A crash before state.json is replaced leaves the previous epoch's directory,
which state.json still names, whole; the epoch directories that --keep and
--keep-best do not keep go only after. Before an epoch that state.json names
is written again, state.json names the top-level copies for that while.
"""
from dataclasses import dataclass
import hashlib
import json
import os
import shutil
import socket

import mxnet as mx
from filelock import FileLock, Timeout

from .data import describe, legacy_identity
from .errors import CheckpointError
from .files import fsync_dir, write_atomic, write_text
from .task import MATH_FLAGS

STATE = 'state.json'
MODEL, TRAINER = 'model.params', 'trainer.states'
LOCK = '.lock'


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _state_path(directory):
    return os.path.join(directory, STATE)


def mx_path(path):
    """path as MXNet takes it: it encodes paths as UTF-8, so a name that Python
    decoded with surrogateescape (a UTF-8 name in the C locale, UTF-8 mode off) is
    decoded from its bytes first. Raises CheckpointError if those are not UTF-8."""
    raw = os.fsencode(path)
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        raise CheckpointError(f'{os.fsdecode(raw)!a}: MXNet takes file names as UTF-8, and this one is '
                              'not: use another --checkpoint-dir') from None


def check_writable(directory):
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f'--checkpoint-dir {directory}: exists and is not a directory')
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f'--checkpoint-dir {directory}: cannot create ({e.strerror})') from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CheckpointError(f'--checkpoint-dir {directory}: not writable')


def hold(directory, session, wait=0):
    """An exclusive lock on DIR for this run, released when the session ends.
    Raises CheckpointError naming the holder if another run has it after
    wait seconds (elastic.py waits for a rank 0 that is handing it over)."""
    lock, owner = FileLock(os.path.join(directory, LOCK)), os.path.join(directory, LOCK + '.owner')
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        try:
            holder = open(owner).read().strip()
        except OSError:
            holder = 'another process'
        raise CheckpointError(f'--checkpoint-dir {directory}: in use by another run ({holder}); '
                              'wait for it to end or pass another --checkpoint-dir') from None
    session.hold(lock)
    write_text(owner, f'pid {os.getpid()} on {socket.gethostname()}\n')


@dataclass(frozen=True)
class Keep:
    """Which epoch directories stay: the last `last` (--keep), and the one with the
    best test accuracy (--keep-best)."""
    last: int = 1
    best: bool = False

    def epochs(self, history):
        done = [m['epoch'] for m in history]
        kept = set(done[-self.last:])
        if self.best and history:
            kept.add(max(history, key=lambda m: m['test_acc'])['epoch'])
        return kept


def locate(path):
    """(the checkpoint directory, the state) of PATH: a --checkpoint-dir (its last
    epoch) or one of its epoch-NNNN directories; state None if there is none."""
    base = path
    if os.path.basename(os.path.normpath(path)).startswith('epoch-') and \
            os.path.isfile(os.path.join(path, STATE)):
        base = os.path.dirname(os.path.normpath(path))
    return base, read_state(path)


def open_for_training(directory, *, resume, overwrite, flags, session, keep=Keep()):
    """Rank 0, before training: DIR made, locked, and its checkpoint checked.

    resume: True (the last epoch), an epoch directory of DIR ('epoch-0003' or a
    path to it), or False. Returns the checkpoint's state to resume, or None to
    start fresh. Raises CheckpointError for an unwritable or busy DIR, a
    checkpoint found without --resume or --overwrite, one that does not fit
    `flags`, or a --resume PATH that is not one of DIR's epochs."""
    check_writable(directory)
    hold(directory, session)
    state = read_state(directory)
    if state is not None:
        remove_stale(directory, keep)
    if isinstance(resume, str):
        state = _epoch_state(directory, resume)
    if state is None or overwrite:
        return None
    if not resume:
        raise CheckpointError(f"--checkpoint-dir {directory}: holds a checkpoint of epoch {state['epoch']}; "
                              'pass --resume to continue it, --overwrite to start over, '
                              'or another --checkpoint-dir')
    check_math(state, flags, directory)
    for name in (MODEL, TRAINER):
        verified_path(directory, state, name)
    return state


def _epoch_state(directory, name):
    path = name if os.path.isdir(name) else os.path.join(directory, name)
    inside = os.path.dirname(os.path.abspath(os.path.normpath(path))) == os.path.abspath(directory)
    if not (inside and os.path.basename(os.path.normpath(path)).startswith('epoch-')):
        raise CheckpointError(f'--resume {name}: not an epoch directory of --checkpoint-dir {directory}; '
                              'to start from another checkpoint\'s weights use --init-from PATH')
    state = read_state(path)
    if state is None:
        raise CheckpointError(f'--resume {name}: {os.path.join(path, STATE)} missing (that epoch was not kept, '
                              'or it was written before epochs kept their own state)')
    return state


def init_from(path, identity):
    """Rank 0, before training (--init-from): (its directory, its state), checked:
    its model file whole and its data this run's. Raises CheckpointError."""
    base, state = locate(path)
    if state is None:
        raise CheckpointError(f'--init-from {path}: {os.path.join(path, STATE)} missing; pass a directory '
                              'written by train --checkpoint-dir, or one of its epoch-NNNN directories')
    if state['flags'].get('data') not in (None, identity):
        raise CheckpointError(f"--init-from {path}: trained on {describe(state['flags']['data'])}, this run has "
                              f'{describe(identity)}; use the same data')
    verified_path(base, state, MODEL)
    return base, state


def save(directory, net, trainer, state, keep=Keep()):
    """Write epoch state['epoch'] so that a crash at any moment leaves the last
    complete checkpoint whole; then remove the one it replaces. Raises
    CheckpointError naming the file if it cannot be written (a full or lost disk)."""
    try:
        _save(directory, net, trainer, state, keep)
    except (OSError, mx.base.MXNetError) as e:
        # MXNet's writer says "FileStream.Write incomplete" where the OS says ENOSPC
        reason = getattr(e, 'strerror', None) or _why_not_written(directory)
        where = getattr(e, 'filename', None) or directory
        remove_stale(directory, keep)   # the half-written epoch directory, which state.json does not name
        raise CheckpointError(f"{where}: cannot write epoch {state['epoch']} ({reason}); "
                              f'{_kept(directory)}') from None


def _why_not_written(directory):
    try:
        free = shutil.disk_usage(directory).free
    except OSError as e:
        return e.strerror
    return 'No space left on device' if free < (1 << 20) else 'the write failed'


def _kept(directory):
    previous = _epoch_dir(directory)
    if previous is None:
        return 'no earlier checkpoint, so nothing was kept'
    return f'the last complete checkpoint ({os.path.basename(previous)}) stays in {directory}'


def _save(directory, net, trainer, state, keep):
    gen = os.path.join(directory, f"epoch-{state['epoch']:04d}")
    if gen == _epoch_dir(directory):   # epoch E again (--overwrite, --resume of a kept epoch, an elastic rollback)
        _name_top_copies(directory)
    if os.path.isdir(gen):   # the one just unnamed, or left by a run that crashed before its state.json
        shutil.rmtree(gen)
    os.makedirs(gen)
    files = {}
    for name, write in ((MODEL, lambda p: net.save_parameters(mx_path(p))),
                        (TRAINER, lambda p: save_trainer(trainer, p))):
        path = os.path.join(gen, name)
        write_atomic(path, write, durable=True)
        files[name] = {'path': os.path.relpath(path, directory), 'sha256': _sha256(path)}
    write_text(os.path.join(gen, STATE), json.dumps(dict(state, files=files), indent=1) + '\n', durable=True)
    fsync_dir(gen)
    write_text(_state_path(directory), json.dumps(dict(state, files=files), indent=1) + '\n', durable=True)
    fsync_dir(directory)
    _link_top_copies(directory, files)
    remove_stale(directory, keep)


def _link_top_copies(directory, files):
    """DIR/model.params and DIR/trainer.states made the files that `files` names
    (hard links where the filesystem has them), each replaced atomically."""
    for name, entry in files.items():
        source, link = os.path.join(directory, entry['path']), os.path.join(directory, name)
        if os.path.abspath(source) == os.path.abspath(link):
            continue
        tmp = f'{link}.tmp{os.getpid()}'
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, link)
    fsync_dir(directory)


def _name_top_copies(directory):
    """Before the epoch directory that state.json names is written again: state.json
    names the top-level copies instead, which keep their contents (their own
    links) while that directory goes, so that a crash then leaves the epoch whole."""
    with open(_state_path(directory)) as f:
        state = json.load(f)
    _link_top_copies(directory, state['files'])
    for name in (MODEL, TRAINER):
        state['files'][name]['path'] = name
    write_text(_state_path(directory), json.dumps(state, indent=1) + '\n', durable=True)
    fsync_dir(directory)


def remove_stale(directory, keep=Keep()):
    """Remove the epoch-* directories that state.json does not name and keep does
    not keep: the ones it replaced, and any a crash left half-written. DIR is
    this run's (its lock)."""
    current = _epoch_dir(directory)
    try:
        history = read_state(directory)['metrics']
    except (CheckpointError, TypeError, KeyError):
        history = []
    kept = {f'epoch-{e:04d}' for e in keep.epochs(history)}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith('epoch-') and os.path.isdir(path) and path != current and name not in kept:
            shutil.rmtree(path, ignore_errors=True)


def _epoch_dir(directory):
    """The epoch directory that DIR's state.json names, or None."""
    try:
        with open(_state_path(directory)) as f:
            entry = json.load(f)['files'][MODEL]['path']
        return os.path.join(directory, os.path.dirname(entry))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_state(directory):
    """The last complete checkpoint's state, or None if there is none."""
    path = _state_path(directory)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        int(state['epoch'])
        for name in (MODEL, TRAINER):
            state['files'][name]['path'], state['files'][name]['sha256']
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f'{path}: not a distsoftmax checkpoint state ({type(e).__name__}: {e}); '
                              'remove the directory or pass another --checkpoint-dir') from None
    except OSError as e:
        raise CheckpointError(f'{path}: unreadable ({e.strerror})') from None
    flags = state.setdefault('flags', {})
    if isinstance(flags.get('data', {}), str):   # written before checkpoints recorded the data's identity
        flags['data'] = legacy_identity(flags['data'], flags.get('seed', 0))
    return state


def check_math(state, flags, directory):
    """Resuming with other math flags or other data would silently make another run."""
    for key, opt in MATH_FLAGS.items():
        if key in state['flags'] and state['flags'][key] != flags[key]:
            if key == 'data':
                raise CheckpointError(f"{_state_path(directory)}: trained on {describe(state['flags'][key])}, "
                                      f"this run has {describe(flags[key])}; use the same data or "
                                      'another --checkpoint-dir')
            raise CheckpointError(
                f"{_state_path(directory)}: made with {opt} {state['flags'][key]}, this run has "
                f"{flags[key]}; use the same flags or another --checkpoint-dir")


def verified_path(directory, state, name):
    entry = state['files'][name]
    path = os.path.join(directory, entry['path'])
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: missing; the checkpoint in {directory} is incomplete')
    if _sha256(path) != entry['sha256']:
        raise CheckpointError(f'{path}: SHA-256 differs from {STATE} (truncated or modified); '
                              'restore it or start another --checkpoint-dir')
    return path


def restore(directory, state, net, trainer, layout):
    """Resume in one call: rank 0 loads the checkpoint (state: what it read and
    verified, None elsewhere or when starting fresh); every rank receives its
    parameters, its epoch and the trainer's update count (trainer None: the
    parameters alone). Returns the epochs done."""
    def load():
        if state is not None:
            load_params(directory, state, net, layout.contexts)
            if trainer is not None:
                load_trainer(directory, state, trainer)
    layout.agree(load)
    layout.mark("the broadcast of rank 0's parameters")
    layout.broadcast(net.collect_params())
    updates = trainer.optimizer.num_update if trainer is not None else 0
    epoch, updates = layout.broadcast_value([state['epoch'], updates] if state else [0, 0])
    if trainer is not None:
        trainer.optimizer.begin_num_update = trainer.optimizer.num_update = int(updates)
    return int(epoch)


def load_params(directory, state, net, contexts):
    path = verified_path(directory, state, MODEL)
    try:
        net.load_parameters(mx_path(path), ctx=contexts)
    except (mx.base.MXNetError, AssertionError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f'{path}: does not fit the model ({reason})') from None


def _updaters(trainer):
    # plain SGD keeps no per-parameter state; momentum would keep it here
    return list(getattr(trainer, '_updaters', None) or [])


def save_trainer(trainer, path):
    """Optimizer states in MXNet's own NDArray format: Trainer.save_states pickles."""
    arrays = {}
    for updater in _updaters(trainer)[:1]:
        for i, st in updater.states.items():
            if isinstance(st, mx.nd.NDArray):
                arrays[str(i)] = st
    arrays['num_update'] = mx.nd.array([trainer.optimizer.num_update], dtype='float64')
    mx.nd.save(mx_path(path), arrays)


def load_trainer(directory, state, trainer):
    path = verified_path(directory, state, TRAINER)
    try:
        arrays = mx.nd.load(mx_path(path))
        num_update = int(arrays.pop('num_update').asscalar())
    except (mx.base.MXNetError, AttributeError, KeyError, ValueError) as e:
        raise CheckpointError(f'{path}: unreadable trainer states ({type(e).__name__})') from None
    opt = trainer.optimizer
    opt.begin_num_update = opt.num_update = num_update
    for updater in _updaters(trainer):
        for key, st in arrays.items():
            updater.states[int(key)] = st.copyto(st.context)
            updater.states_synced[int(key)] = False
