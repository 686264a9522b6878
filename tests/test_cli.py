"""Every bad input: non-zero exit, one line on stderr naming the thing, no
traceback, nothing half-written, no checkpoint damaged. One row a case."""
import hashlib
import json
import os
import shutil

import pytest

from harness import run_cli

TINY = ['--synthetic', '512', '--epochs', '1', '--quiet']


def _corrupt_state(ck):
    open(ck / 'state.json', 'w').write('{"epoch": 1, "fl')


def _truncate_params(ck):
    state = json.load(open(ck / 'state.json'))
    path = ck / state['files']['model.params']['path']
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def _remove_params(ck):
    state = json.load(open(ck / 'state.json'))
    os.remove(ck / state['files']['model.params']['path'])


def _wrong_shape(ck):
    """A well-formed params file, with matching hashes, for another model."""
    from mxnet import nd
    state = json.load(open(ck / 'state.json'))
    path = ck / state['files']['model.params']['path']
    os.remove(path)   # a hard link to the top-level copy: do not write through it
    nd.save(str(path), {'weight': nd.zeros((10, 100)), 'bias': nd.zeros((10,))})
    state['files']['model.params']['sha256'] = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    json.dump(state, open(ck / 'state.json', 'w'))


def _tree_digest(path):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for f in sorted(files):
            if f.startswith('.lock'):   # the run's lock, not the checkpoint
                continue
            h.update(f.encode() + open(os.path.join(root, f), 'rb').read())
    return h.hexdigest()


# (args, what stderr must contain); {ck} is a good checkpoint of TINY, {tmp} a
# scratch directory, {idx} a directory of valid but non-Fashion-MNIST IDX files
CASES = [
    # flags
    (['--epochs', '0'], '--epochs: 0 must be a positive number'),
    (['--epochs', '-2'], '--epochs: -2 must be a positive number'),
    (['--epochs', 'five'], "--epochs: 'five' is not a number"),
    (['--batch-size', '0'], '--batch-size: 0 must be a positive'),
    (['--batch-size', '-256'], '--batch-size: -256 must be a positive'),
    (['--batch-size', '2.5'], "--batch-size: '2.5' is not a number"),
    (['--lr', '0'], '--lr: 0 must be a positive'),
    (['--lr', '-0.1'], '--lr: -0.1 must be a positive'),
    (['--lr', 'fast'], "--lr: 'fast' is not a number"),
    (['--lr', 'inf'], '--lr: inf must be a positive'),
    (['--lr', '1e39'], '--lr: 1e39 must be a positive number below 3.403e+38'),
    (['--lr', 'nan'], '--lr: nan must be a positive'),
    (['--seed', '-1'], '--seed: -1 must be 0 or more'),
    (['--seed', 'x'], "--seed: 'x' is not an integer"),
    (['--synthetic', '0'], '--synthetic: 0 must be a positive'),
    (['--devices', 'tpu:1', *TINY], 'argument --devices: tpu:1: expected cpu, cpu:N'),
    (['--devices', 'cpu:0', *TINY], 'argument --devices: cpu:0: expected'),
    (['--devices', 'gpu:0', *TINY], '--devices gpu:0: no GPU found'),
    (['--layout', 'nccl'], "argument --layout/--backend: invalid choice: 'nccl'"),
    (['--backend', 'nccl'], "argument --layout/--backend: invalid choice: 'nccl'"),
    (['--resume'], '--resume needs --checkpoint-dir'),
    (['--synthetic', '--data-dir', '/tmp'], '--data-dir: not allowed with argument --synthetic'),
    (['--batch-size', '255', '--devices', 'cpu:2', *TINY], '--batch-size 255 is not divisible by workers x devices = 2: use a multiple of 2 (e.g. 252, 254, 256, 258)'),
    (['--synthetic', '1', '--devices', 'cpu:2', '--batch-size', '2', '--quiet'], '1 training samples, fewer than workers x devices = 2'),
    (['--synthetic', '100', '--drop-last', '--quiet'], '100 training samples, fewer than a batch'),
    (['--overwrite'], '--overwrite needs --checkpoint-dir'),
    (['--resume', '--overwrite', '--checkpoint-dir', '{tmp}'], 'not allowed with argument --resume'),
    (['--fp16-allreduce', *TINY], '--fp16-allreduce needs the horovod layout'),
    (['--frobnicate'], 'unrecognized arguments: --frobnicate'),
    # data
    (['--data-dir', '{tmp}/nowhere', '--epochs', '1'], '{tmp}/nowhere: data directory not found'),
    (['--data-dir', '{tmp}/empty', '--epochs', '1'], 'empty/train-images-idx3-ubyte.gz: file missing'),
    (['--data-dir', '{idx}', '--epochs', '1'], 'train-images-idx3-ubyte.gz: SHA-256 of its content does not match'),
    (['--data-dir', '{badidx}', '--epochs', '1', '--no-verify'], 't10k-labels-idx1-ubyte.gz: not a gzip file'),
    # checkpoints
    (['--checkpoint-dir', '{ck}', '--resume', *TINY, '--lr', '0.2'], 'made with --lr 0.1, this run has 0.2'),
    (['--checkpoint-dir', '{ck}', '--resume', *TINY, '--batch-size', '128'], 'made with --batch-size 256, this run has 128'),
    (['--checkpoint-dir', '{ck}', '--resume', *TINY, '--seed', '3'], 'made with --seed 0, this run has 3'),
    (['--checkpoint-dir', '{ck}', '--resume', '--synthetic', '600', '--epochs', '2'], 'trained on synthetic data (512 samples, seed 0), this run has synthetic data (600 samples, seed 0)'),
    (['--checkpoint-dir', '{ck}', '--resume', '--data-dir', '{idx}', '--no-verify', '--epochs', '2'], 'trained on synthetic data (512 samples, seed 0), this run has other IDX data'),
    (['--checkpoint-dir', '{ck}', *TINY], 'holds a checkpoint of epoch 1; pass --resume to continue it, --overwrite to start over'),
    (['evaluate', '--checkpoint-dir', '{ck}', '--synthetic', '999'], 'trained on synthetic data (512 samples, seed 0), not --synthetic 999'),
    (['evaluate', '--checkpoint-dir', '{ck}', '--data-dir', '{idx}'], 'trained on synthetic data (512 samples, seed 0), not --data-dir'),
    (['--checkpoint-dir', '{ck:state}', '--resume', *TINY], 'state.json: not a distsoftmax checkpoint state'),
    (['--checkpoint-dir', '{ck:truncate}', '--resume', *TINY], 'model.params: SHA-256 differs from state.json'),
    (['--checkpoint-dir', '{ck:remove}', '--resume', *TINY], 'model.params: missing'),
    (['--checkpoint-dir', '{ck:shape}', '--resume', *TINY], 'model.params: does not fit the model'),
    (['evaluate', '--checkpoint-dir', '{tmp}/empty', '--synthetic', '512'], 'state.json: missing'),
    (['evaluate', '--checkpoint-dir', '{ck:truncate}', '--synthetic', '512'], 'model.params: SHA-256 differs'),
    (['--synthetic', '600', '--batch-size', '1000000000', '--epochs', '1'],
     '--batch-size 1000000000 is larger than the 600 training samples (a batch that no epoch fills): '
     'use at most 600'),
    # output paths
    (['--metrics', '{tmp}', *TINY], '--metrics {tmp}: is a directory'),
    (['--metrics', '{tmp}/afile/m.jsonl', *TINY], '--metrics {tmp}/afile/m.jsonl: cannot write in {tmp}/afile'),
    (['--plot', '/proc/distsoftmax.png', *TINY], '--plot /proc/distsoftmax.png: cannot write in /proc'),
    (['--checkpoint-dir', '{tmp}/afile', *TINY], '--checkpoint-dir {tmp}/afile: exists and is not a directory'),
    (['--checkpoint-dir', '/proc/ck', *TINY], '--checkpoint-dir /proc/ck: cannot create'),
]
DAMAGE = {'state': _corrupt_state, 'truncate': _truncate_params, 'remove': _remove_params,
          'shape': _wrong_shape}


@pytest.fixture(scope='module')
def good_checkpoint(tmp_path_factory):
    ck = tmp_path_factory.mktemp('good') / 'ck'
    r = run_cli(*TINY, '--checkpoint-dir', ck)
    assert r.returncode == 0, r.stderr
    return ck


@pytest.mark.parametrize('args,message', CASES, ids=[' '.join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_clear_line(args, message, tmp_path, good_checkpoint, idx_dir):
    open(tmp_path / 'afile', 'w').close()
    os.mkdir(tmp_path / 'empty')
    badidx = tmp_path / 'badidx'
    shutil.copytree(idx_dir, badidx)
    open(badidx / 't10k-labels-idx1-ubyte.gz', 'wb').write(b'plain text')
    ck = tmp_path / 'ck'
    shutil.copytree(good_checkpoint, ck)
    resolved = []
    for a in args:
        if a.startswith('{ck:'):
            DAMAGE[a[4:-1]](ck)
            a = str(ck)
        resolved.append(a.format(tmp=tmp_path, ck=ck, idx=idx_dir, badidx=badidx))
    before = _tree_digest(ck)
    r = run_cli(*resolved)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith('distsoftmax: error: ') and message.format(tmp=tmp_path) in lines[0], lines[0]
    assert 'Traceback' not in r.stderr + r.stdout
    assert _tree_digest(ck) == before                          # no checkpoint damaged
    leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs if '.tmp' in f or f.endswith('.jsonl')]
    assert not leftovers


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli('--data-dir', tmp_path / 'nowhere', '--debug')
    assert r.returncode != 0 and 'Traceback' in r.stderr and 'DataError' in r.stderr


def test_help_explains_every_flag_with_its_default():
    r = run_cli('--help')
    assert r.returncode == 0
    for flag in ('--epochs', '--batch-size', '--lr', '--seed', '--data-dir', '--synthetic',
                 '--devices', '--layout', '--checkpoint-dir', '--resume', '--metrics',
                 '--plot', '--quiet', '--fp16-allreduce'):
        assert flag in r.stdout
    assert '(default: 5)' in r.stdout and '(default: 256)' in r.stdout and '(default: 0.1)' in r.stdout
    assert 'evaluate' in r.stdout
    r = run_cli('evaluate', '--help')
    assert r.returncode == 0 and '--checkpoint-dir' in r.stdout


def test_console_script_is_the_module(tmp_path):
    import subprocess
    import sys
    exe = os.path.join(os.path.dirname(sys.executable), 'distsoftmax')
    r = subprocess.run([exe, '--epochs', '0'], capture_output=True, text=True)
    assert r.returncode == 2 and '--epochs: 0 must be a positive number' in r.stderr




@pytest.mark.parametrize('value', ['abc', '-1', '0'])
def test_a_bad_distsoftmax_timeout_is_one_line(value):
    r = run_cli(*TINY, extra_env={'DISTSOFTMAX_TIMEOUT': value})
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f'distsoftmax: error: DISTSOFTMAX_TIMEOUT={value}: ') and 'as --timeout' in lines[0]


def test_timeout_is_the_flag_then_the_environment_then_300(monkeypatch):
    from distsoftmax import cli
    monkeypatch.delenv('DISTSOFTMAX_TIMEOUT', raising=False)
    assert cli.parse(['--epochs', '1'])[0].timeout == 300
    monkeypatch.setenv('DISTSOFTMAX_TIMEOUT', '45')
    assert cli.parse(['--epochs', '1'])[0].timeout == 45
    assert cli.parse(['evaluate', '--checkpoint-dir', 'x'])[0].timeout == 45
    assert cli.parse(['--epochs', '1', '--timeout', '7'])[0].timeout == 7
