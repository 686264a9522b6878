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
    # overflows float32 logits in epoch 2 on this data (1.2e34 never does, 1.3e34 in epoch 1)
    ck, run = tmp_path / 'ck', ['--synthetic', '384', '--batch-size', '128', '--lr', '1.25e34', '--quiet']
    assert run_cli(*run, '--epochs', '1', '--checkpoint-dir', ck).returncode == 0
    good = open(ck / 'model.params', 'rb').read()
    r = run_cli(*run, '--epochs', '3', '--checkpoint-dir', ck, '--resume', '--metrics', tmp_path / 'm.jsonl')
    assert r.returncode == 1
    assert r.stderr.strip() == 'distsoftmax: error: diverged at epoch 2, step 3: lower --lr'
    assert open(ck / 'model.params', 'rb').read() == good
    assert json.load(open(ck / 'state.json'))['epoch'] == 1


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
