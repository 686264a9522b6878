"""distsoftmax.train() and evaluate() from Python: a library's semantics, in this
very process (as a notebook or a user's script calls them), and under launchers."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import distsoftmax
from distsoftmax import data
from harness import env, horovodrun_argv, mpirun_argv, needs_horovod, run_cli

TINY = dict(synthetic=3000, epochs=2, quiet=True)
CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def handlers():
    return {s: signal.getsignal(s) for s in CAUGHT}


def weights(run):
    return {k: p.data().asnumpy() for k, p in run.net.collect_params().items()}


def test_importing_the_package_loads_no_mxnet():
    code = "import sys, distsoftmax; distsoftmax.UserError; print('mxnet' in sys.modules, 'numpy' in sys.modules)"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env(), timeout=60)
    assert r.stdout.split() == ['False', 'False'], r.stderr


def test_train_twice_in_one_process_is_bit_equal_and_leaves_nothing_behind(tmp_path):
    before = handlers()
    first = distsoftmax.train(**TINY, checkpoint_dir=tmp_path / 'a')
    assert handlers() == before
    second = distsoftmax.train(**TINY, checkpoint_dir=tmp_path / 'b')
    assert handlers() == before
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    timeless = [[{k: v for k, v in m.items() if k not in ('seconds', 'samples_per_s')} for m in run.history]
                for run in (first, second)]
    assert timeless[0] == timeless[1]
    assert first.checkpoint_dir == str(tmp_path / 'a') and (tmp_path / 'a' / 'model.params').is_file()
    # the lock was released with the call: the same directory can be resumed at once
    third = distsoftmax.train(**dict(TINY, epochs=3), checkpoint_dir=tmp_path / 'a', resume=True)
    assert [m['epoch'] for m in third.history] == [1, 2, 3]


def test_the_result_predicts_the_test_set_at_the_reported_accuracy():
    run = distsoftmax.train(**TINY)
    assert [set(m) for m in run.history] == [{'epoch', 'train_loss', 'train_acc', 'test_acc', 'samples',
                                             'seconds', 'samples_per_s'}] * 2
    assert run.summary['summary'] is True and run.summary['epochs'] == 2
    test = data.synthetic(0, 3000)
    predicted = run.predict(test.test_images)
    assert predicted.shape == test.test_labels.shape
    assert np.mean(predicted == test.test_labels) == run.history[-1]['test_acc'] == run.test_acc


def test_evaluate_returns_the_checkpoints_accuracy_and_confusion(tmp_path):
    trained = distsoftmax.train(**TINY, checkpoint_dir=tmp_path / 'ck')
    before = handlers()
    e = distsoftmax.evaluate(checkpoint_dir=tmp_path / 'ck')
    assert handlers() == before
    assert e.epoch == 2 and e.test_acc == trained.test_acc and e.total == 500
    assert e.confusion.shape == (10, 10) and e.confusion.sum() == e.total
    assert np.trace(e.confusion) == e.correct and e.classes[0] == 'class 0'
    assert np.all((e.per_class_acc >= 0) & (e.per_class_acc <= 1))


@pytest.mark.parametrize('options,argv', [
    (dict(synthetic=600, batch_size=7, devices='cpu:2'), ['--synthetic', '600', '--batch-size', '7',
                                                          '--devices', 'cpu:2']),
    (dict(batch_size=0), ['--batch-size', '0']),
    (dict(resume=True), ['--resume']),
    (dict(data_dir='/nonexistent'), ['--data-dir', '/nonexistent']),
])
def test_an_error_raises_the_public_exception_with_the_clis_line_and_code(options, argv):
    before = handlers()
    with pytest.raises(distsoftmax.UserError) as caught:
        distsoftmax.train(**options, epochs=1, quiet=True)
    assert handlers() == before
    cli = run_cli(*argv, '--epochs', '1', '--quiet')
    assert cli.stderr == f'distsoftmax: error: {caught.value}\n'
    assert cli.returncode == caught.value.exit_code


def test_an_unknown_keyword_names_the_known_ones():
    with pytest.raises(distsoftmax.UsageError, match="no option 'epoch'.*epochs") as caught:
        distsoftmax.train(epoch=3)
    assert caught.value.exit_code == 2


def test_sigint_stops_after_the_current_step_and_the_next_call_trains(tmp_path):
    before = handlers()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as caught:   # what a notebook's interrupt ends a cell with
            distsoftmax.train(synthetic=60000, epochs=200, quiet=True, checkpoint_dir=tmp_path / 'ck')
    finally:
        timer.cancel()
    assert isinstance(caught.value, distsoftmax.Interrupted) and caught.value.exit_code == 130
    assert 'interrupted by SIGINT' in str(caught.value)
    assert handlers() == before
    run = distsoftmax.train(**TINY)             # no signal left over from the last call
    assert run.summary['epochs'] == 2


def test_no_module_keeps_run_state():
    from distsoftmax import checkpoint, layout, signals
    assert not hasattr(layout, 'started') and not hasattr(signals, '_received')
    assert not hasattr(checkpoint, '_held')


SCRIPT = textwrap.dedent('''
    import json, sys
    import distsoftmax
    run = distsoftmax.train(synthetic=600, epochs=1, quiet=True, layout=sys.argv[1])
    rows = [{'rank': run.rank, 'acc': run.test_acc, 'world': run.summary['world_size']}]
    try:
        distsoftmax.train(synthetic=600, batch_size=7, quiet=True, layout=sys.argv[1])
    except distsoftmax.UsageError as e:
        rows.append({'rank': run.rank, 'error': str(e), 'code': e.exit_code})
    with open(f'rank{run.rank}.json', 'w') as f:
        json.dump(rows, f)
''')


@pytest.mark.launcher
@pytest.mark.parametrize('launch', [pytest.param('horovodrun', marks=needs_horovod), 'mpirun'])
def test_a_user_script_under_a_launcher(launch, tmp_path):
    script = tmp_path / 'my_script.py'
    script.write_text(SCRIPT)
    if launch == 'horovodrun':
        cmd = horovodrun_argv(2, sys.executable, [script, 'horovod'], '--gloo')
    else:
        cmd = mpirun_argv(2, sys.executable, [script, 'mpi'])
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env())
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [row for rank in (0, 1) for row in json.load(open(tmp_path / f'rank{rank}.json'))]
    results = sorted((row['rank'], row['acc'], row['world']) for row in rows if 'acc' in row)
    assert [rank for rank, _, _ in results] == [0, 1] and results[0][1:] == results[1][1:] \
        and results[0][2] == 2
    errors = [row for row in rows if 'error' in row]
    assert len(errors) == 2 and errors[0]['error'] == errors[1]['error'] and errors[0]['code'] == 2
    assert 'not divisible by workers x devices = 2' in errors[0]['error']
