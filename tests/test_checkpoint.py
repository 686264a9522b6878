"""Resume is bit-equal, crash-safe, and works across layouts; faults lose at most an epoch."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import ROOT, env, horovodrun, load_params, needs_horovod, run_cli, same

RUN = ['--synthetic', '3000', '--batch-size', '128', '--quiet']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    ck = tmp_path_factory.mktemp('full') / 'ck'
    r = run_cli(*RUN, '--epochs', '3', '--checkpoint-dir', ck)
    assert r.returncode == 0, r.stderr
    return load_params(ck / 'model.params')


def test_resume_is_bit_equal(tmp_path, uninterrupted):
    ck = tmp_path / 'ck'
    assert run_cli(*RUN, '--epochs', '1', '--checkpoint-dir', ck).returncode == 0
    state = json.load(open(ck / 'state.json'))
    assert state['epoch'] == 1 and state['flags']['batch_size'] == 128 and len(state['metrics']) == 1
    r = run_cli(*RUN, '--epochs', '3', '--checkpoint-dir', ck, '--resume', '--metrics', tmp_path / 'm.jsonl')
    assert r.returncode == 0, r.stderr
    assert same(load_params(ck / 'model.params'), uninterrupted)
    lines = [json.loads(line) for line in open(tmp_path / 'm.jsonl')]
    assert [m['epoch'] for m in lines[:-1]] == [1, 2, 3] and lines[-1]['summary']
    # top-level copies equal the files state.json names
    state = json.load(open(ck / 'state.json'))
    assert open(ck / 'model.params', 'rb').read() == open(ck / state['files']['model.params']['path'], 'rb').read()
    assert sorted(f for f in os.listdir(ck) if not f.startswith('.lock')) == \
        ['epoch-0003', 'model.params', 'state.json', 'trainer.states']


def test_resume_without_checkpoint_starts_fresh_and_says_so(tmp_path, uninterrupted):
    r = run_cli(*RUN, '--epochs', '3', '--checkpoint-dir', tmp_path / 'new', '--resume')
    assert r.returncode == 0 and 'no checkpoint in' in r.stderr and 'starting fresh' in r.stderr
    assert same(load_params(tmp_path / 'new' / 'model.params'), uninterrupted)


@pytest.mark.parametrize('crash_after', ['model.params', 'trainer.states'])
def test_crash_between_checkpoint_files_keeps_the_previous_one(tmp_path, uninterrupted, crash_after):
    ck = tmp_path / 'ck'
    r = run_cli(*RUN, '--epochs', '3', '--checkpoint-dir', ck,
                extra_env={'DISTSOFTMAX_FAULT': f'crash_after={crash_after}@2'})
    assert r.returncode != 0
    assert json.load(open(ck / 'state.json'))['epoch'] == 1     # epoch 2 never completed
    r = run_cli(*RUN, '--epochs', '3', '--checkpoint-dir', ck, '--resume')
    assert r.returncode == 0, r.stderr
    assert same(load_params(ck / 'model.params'), uninterrupted)


@pytest.mark.parametrize('crash_after', ['model.params', 'trainer.states', 'state.json'])
def test_a_crash_while_rewriting_the_named_epoch_keeps_it(tmp_path, crash_after):
    """--overwrite of a checkpoint at epoch 1 writes epoch 1 again, over the files
    state.json names (as an elastic run's new rank 0 does after a rollback): a
    crash there still leaves the old epoch 1 whole."""
    ck = tmp_path / 'ck'
    assert run_cli(*RUN, '--epochs', '1', '--checkpoint-dir', ck).returncode == 0
    old = load_params(ck / 'model.params')
    r = run_cli(*RUN, '--epochs', '1', '--seed', '1', '--checkpoint-dir', ck, '--overwrite',
                extra_env={'DISTSOFTMAX_FAULT': f'crash_after={crash_after}@1'})
    assert r.returncode != 0
    e = run_cli('evaluate', '--checkpoint-dir', ck)
    assert e.returncode == 0, e.stderr
    state = json.load(open(ck / 'state.json'))
    assert same(load_params(ck / state['files']['model.params']['path']), old)


def test_sigterm_stops_fast_and_keeps_the_last_checkpoint(tmp_path, uninterrupted):
    ck = tmp_path / 'ck'
    p = subprocess.Popen([sys.executable, '-m', 'distsoftmax', *RUN, '--epochs', '3',
                          '--checkpoint-dir', str(ck)], cwd=ROOT, env=env(DISTSOFTMAX_FAULT='sleep=0.02'),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (ck / 'state.json').exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    out, err = p.communicate(timeout=30)
    assert time.time() - t0 < 5
    assert p.returncode == 143 and 'Traceback' not in err
    assert err.strip().startswith('distsoftmax: interrupted by SIGTERM in epoch 2; the last completed epoch (1) '
                                  f'stays in {ck}'), err
    assert json.load(open(ck / 'state.json'))['epoch'] == 1
    r = run_cli(*RUN, '--epochs', '3', '--checkpoint-dir', ck, '--resume')
    assert r.returncode == 0, r.stderr
    assert same(load_params(ck / 'model.params'), uninterrupted)


def test_divergence_stops_and_keeps_the_good_checkpoint(tmp_path):
    # a linear softmax model tolerates huge rates (its gradients saturate); this one
    # overflows float32 logits in epoch 3 on this data (1.29e34 does in epoch 1)
    ck, run = tmp_path / 'ck', ['--synthetic', '384', '--batch-size', '128', '--lr', '1.25e34', '--quiet']
    assert run_cli(*run, '--epochs', '2', '--checkpoint-dir', ck).returncode == 0
    good = open(ck / 'model.params', 'rb').read()
    r = run_cli(*run, '--epochs', '4', '--checkpoint-dir', ck, '--resume', '--metrics', tmp_path / 'm.jsonl')
    assert r.returncode == 1
    assert r.stderr.strip() == 'distsoftmax: error: diverged at epoch 3, step 3: lower --lr'
    assert open(ck / 'model.params', 'rb').read() == good
    assert json.load(open(ck / 'state.json'))['epoch'] == 2


@pytest.mark.launcher
@needs_horovod
def test_checkpoint_of_one_process_resumes_under_horovod(tmp_path):
    run = ['--synthetic', '3000', '--batch-size', '128', '--quiet', '--epochs']
    ck, ref = tmp_path / 'ck', tmp_path / 'ref'
    assert run_cli(*run, '1', '--checkpoint-dir', ck).returncode == 0
    r = horovodrun(2, *run, '3', '--checkpoint-dir', ck, '--resume')
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.load(open(ck / 'state.json'))['epoch'] == 3
    r = horovodrun(2, *run, '3', '--checkpoint-dir', ref)
    assert r.returncode == 0, r.stdout + r.stderr
    a, b = load_params(ck / 'model.params'), load_params(ref / 'model.params')
    for k in a:
        assert abs(a[k] - b[k]).max() < 1e-5


def test_checkpoints_are_not_pickles(tmp_path):
    ck = tmp_path / 'ck'
    assert run_cli(*RUN, '--epochs', '1', '--checkpoint-dir', ck).returncode == 0
    for name in ('model.params', 'trainer.states'):
        head = open(ck / name, 'rb').read(2)
        assert head[:1] != b'\x80', f'{name} looks like a pickle'
    from mxnet import nd
    assert 'num_update' in nd.load(str(ck / 'trainer.states'))


KEEP_RUN = ['--synthetic', '3000', '--epochs', '4', '--quiet']


def _epochs(ck):
    return sorted(f for f in os.listdir(ck) if f.startswith('epoch-'))


def test_keep_leaves_the_last_epochs_each_loadable_and_resumable(tmp_path):
    ck = tmp_path / 'ck'
    r = run_cli(*KEEP_RUN, '--checkpoint-dir', ck, '--keep', '2')
    assert r.returncode == 0, r.stderr
    assert _epochs(ck) == ['epoch-0003', 'epoch-0004']
    for name in _epochs(ck):
        e = run_cli('evaluate', '--checkpoint-dir', ck / name)
        assert e.returncode == 0 and f'(epoch {int(name[-4:])})' in e.stdout, e.stderr
    # resuming epoch 3 replays epoch 4 bit-equal
    before = load_params(ck / 'epoch-0004' / 'model.params')
    r = run_cli(*KEEP_RUN, '--checkpoint-dir', ck, '--keep', '2', '--resume', 'epoch-0003')
    assert r.returncode == 0, r.stderr
    assert same(load_params(ck / 'model.params'), before)
    r = run_cli(*KEEP_RUN, '--checkpoint-dir', ck, '--resume', '/elsewhere/epoch-0001')
    assert r.returncode == 1 and 'not an epoch directory of --checkpoint-dir' in r.stderr, r.stderr


def test_keep_best_keeps_the_epoch_of_the_best_test_accuracy(tmp_path):
    ck = tmp_path / 'ck'
    r = run_cli(*KEEP_RUN, '--epochs', '6', '--lr', '2', '--checkpoint-dir', ck, '--keep-best')
    assert r.returncode == 0, r.stderr
    history = json.load(open(ck / 'state.json'))['metrics']
    best = max(history, key=lambda m: m['test_acc'])['epoch']
    assert _epochs(ck) == sorted({f'epoch-{best:04d}', 'epoch-0006'})
    state = json.load(open(ck / f'epoch-{best:04d}' / 'state.json'))
    assert state['epoch'] == best


def test_init_from_takes_the_weights_with_another_lr_and_a_fresh_count(tmp_path):
    ck, fine = tmp_path / 'ck', tmp_path / 'fine'
    assert run_cli(*KEEP_RUN, '--checkpoint-dir', ck).returncode == 0
    r = run_cli(*KEEP_RUN, '--epochs', '1', '--lr', '0.02', '--init-from', ck, '--checkpoint-dir', fine,
                '--metrics', tmp_path / 'm.jsonl')
    assert r.returncode == 0, r.stderr
    state = json.load(open(fine / 'state.json'))
    assert state['epoch'] == 1 and state['flags']['lr'] == 0.02
    first = json.loads(open(tmp_path / 'm.jsonl').readline())
    trained = json.load(open(ck / 'state.json'))['metrics'][-1]
    assert first['train_loss'] < trained['train_loss'] * 1.2       # it went on from there, not from scratch
    r = run_cli('--synthetic', '600', '--epochs', '1', '--init-from', ck)
    assert r.returncode == 1 and 'use the same data' in r.stderr, r.stderr
    r = run_cli(*KEEP_RUN, '--init-from', ck, '--checkpoint-dir', ck, '--resume')
    assert r.returncode == 2 and '--init-from starts a new run' in r.stderr, r.stderr


def test_model_params_load_into_a_plain_dense(tmp_path):
    """README: model.params is a plain nn.Dense(10, in_units=784) on x/255."""
    import mxnet as mx
    import numpy as np
    from mxnet import gluon, nd
    from distsoftmax import data
    ck = tmp_path / 'ck'
    assert run_cli(*KEEP_RUN, '--epochs', '1', '--checkpoint-dir', ck).returncode == 0
    net = gluon.nn.Dense(10, in_units=784)
    net.load_parameters(str(ck / 'model.params'), ctx=mx.cpu())
    test = data.synthetic(0, 3000)
    predicted = net(nd.array(test.test_images.reshape(-1, 784)) / 255).argmax(axis=1).asnumpy()
    acc = json.load(open(ck / 'state.json'))['metrics'][-1]['test_acc']
    assert np.mean(predicted == test.test_labels) == acc
