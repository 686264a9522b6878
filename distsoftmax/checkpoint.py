"""Checkpoints that survive a crash at any moment, and never unpickle.

Layout of DIR after epoch E:
  epoch-000E/model.params    Gluon's save_parameters format
  epoch-000E/trainer.states  Trainer.save_states
  model.params, trainer.states   the same files (hard links), for users
  state.json                 written last: the epoch, the math flags, the
                             metrics so far, and the SHA-256 of both files
A crash before state.json is replaced leaves the previous epoch's directory,
which state.json still names, whole; older directories go only after.
"""
import hashlib
import json
import os
import shutil

import mxnet as mx

from .errors import CheckpointError

STATE = 'state.json'
MODEL, TRAINER = 'model.params', 'trainer.states'
# flags that change the trajectory: resuming with others would be another run
MATH_FLAGS = ('batch_size', 'lr', 'seed', 'data')


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path, write):
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        write(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable(directory):
    """Fail before training, not after the first epoch."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f'--checkpoint-dir {directory}: exists and is not a directory')
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f'--checkpoint-dir {directory}: cannot create ({e.strerror})') from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CheckpointError(f'--checkpoint-dir {directory}: not writable')


def save(directory, net, trainer, state, fault=None):
    epoch = state['epoch']
    gen = os.path.join(directory, f'epoch-{epoch:04d}')
    if os.path.isdir(gen):  # left by a run that crashed before its state.json
        shutil.rmtree(gen)
    os.makedirs(gen)
    files = {}
    for name, write in ((MODEL, net.save_parameters), (TRAINER, lambda p: save_trainer(trainer, p))):
        path = os.path.join(gen, name)
        _write_atomic(path, write)
        files[name] = {'path': os.path.relpath(path, directory), 'sha256': _sha256(path)}
        if fault:
            fault.file_written(name)
    _fsync_dir(gen)
    for name in files:  # convenience copies at the top; state.json stays the truth
        link = os.path.join(directory, name)
        tmp = f'{link}.tmp{os.getpid()}'
        try:
            os.link(os.path.join(gen, name), tmp)
        except OSError:
            shutil.copyfile(os.path.join(gen, name), tmp)
        os.replace(tmp, link)
    state = dict(state, files=files)
    _write_atomic(os.path.join(directory, STATE),
                  lambda p: open(p, 'w').write(json.dumps(state, indent=1) + '\n'))
    _fsync_dir(directory)
    if fault:
        fault.file_written(STATE)
    for old in os.listdir(directory):
        if old.startswith('epoch-') and os.path.join(directory, old) != gen:
            shutil.rmtree(os.path.join(directory, old), ignore_errors=True)


def read_state(directory):
    """The last complete checkpoint's state, or None if there is none."""
    path = os.path.join(directory, STATE)
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
    return state


def check_math(state, flags, directory):
    """Resuming with other math flags would silently make another run."""
    for key in MATH_FLAGS:
        if key in state['flags'] and state['flags'][key] != flags[key]:
            opt = '--' + key.replace('_', '-')
            raise CheckpointError(
                f"{os.path.join(directory, STATE)}: made with {opt} {state['flags'][key]}, this run has "
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


def load_params(directory, state, net, contexts):
    path = verified_path(directory, state, MODEL)
    try:
        net.load_parameters(path, ctx=contexts)
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
    arrays['num_update'] = mx.nd.array([trainer._optimizer.num_update], dtype='float64')
    mx.nd.save(path, arrays)


def load_trainer(directory, state, trainer):
    path = verified_path(directory, state, TRAINER)
    try:
        arrays = mx.nd.load(path)
        num_update = int(arrays.pop('num_update').asscalar())
    except (mx.base.MXNetError, AttributeError, KeyError, ValueError) as e:
        raise CheckpointError(f'{path}: unreadable trainer states ({type(e).__name__})') from None
    opt = trainer._optimizer
    opt.begin_num_update = opt.num_update = num_update  # counts go on from here
    for updater in _updaters(trainer):
        for key, st in arrays.items():
            updater.states[int(key)] = st.copyto(st.context)
            updater.states_synced[int(key)] = False
