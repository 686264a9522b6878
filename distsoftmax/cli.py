"""python -m distsoftmax [train|evaluate] ...: flags, errors, the run's life cycle.

Rank 0 (layout.is_main) prints and writes every file; other ranks stay quiet.
Bad input ends in one line on stderr and exit 1, never a traceback (--debug
shows it).
"""
import argparse
import atexit
import os
import signal
import sys
import threading
import time
import warnings

DEFAULTS = dict(epochs=5, batch_size=256, lr=0.1, seed=0)


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not value > 0 or value != value or value == float('inf'):
            raise argparse.ArgumentTypeError(f"{text} must be a positive number")
        return value
    parse.__name__ = kind.__name__
    return parse


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'{text} must be 0 or more')
    return value


def _data_flags(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument('--data-dir', metavar='DIR',
                   help='directory with the four Fashion-MNIST IDX .gz files (default: '
                        '$DISTSOFTMAX_DATA, then /usr/share/datasets/fashion-mnist, then '
                        '~/.cache/distsoftmax/fashion-mnist, else download there)')
    g.add_argument('--synthetic', nargs='?', const=60000, type=_positive(int), metavar='N',
                   help='train on N deterministic synthetic samples (default N: 60000) '
                        'instead of the real data; for smoke runs and tests')
    p.add_argument('--no-verify', action='store_true',
                   help='skip the SHA-256 check of the data files (for other IDX data such as '
                        'MNIST); the strict format checks still run')
    p.add_argument('--devices', metavar='SPEC',
                   help='cpu, cpu:N (N CPU contexts), gpu, gpu:K, gpu:0,1 or gpu:all '
                        '(default: gpu:0 if a GPU is visible, else cpu; with horovod or mpi, '
                        'one device per process, the GPU picked by local rank)')
    p.add_argument('--debug', action='store_true', help='show tracebacks of errors')


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, not argparse's usage block: clusters grep logs line by line
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def parser():
    top = _Parser(
        prog='distsoftmax',
        description='Data-parallel softmax regression (Dense(10)) on Fashion-MNIST with MXNet '
                    'Gluon. The same command runs on one CPU or GPU, on several devices '
                    '(--devices), under horovodrun, or under mpirun; the math is the same in '
                    'every layout. "train" is the default command.',
        epilog='examples:\n'
               '  python -m distsoftmax                         5 epochs on the CPU or GPU\n'
               '  python -m distsoftmax --devices cpu:2         one process, 2 contexts\n'
               '  horovodrun -np 4 python -m distsoftmax        4 Horovod workers\n'
               '  mpirun -np 2 python -m distsoftmax --backend mpi\n'
               '  python -m distsoftmax evaluate --checkpoint-dir runs/ckpt\n'
               '\nenvironment:\n'
               '  DISTSOFTMAX_DATA   the data directory, if --data-dir is not given\n'
               '  OMP_NUM_THREADS    CPU threads per process (default: 1, the fastest for\n'
               '                     this model up to batches of about 1000 per device)\n',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest='command', metavar='{train,evaluate}', parser_class=_Parser)
    class Formatter(argparse.RawDescriptionHelpFormatter):
        def _get_help_string(self, action):  # defaults that say something
            if action.default not in (None, False, argparse.SUPPRESS):
                return action.help + ' (default: %(default)s)'
            return action.help

    t = sub.add_parser('train', formatter_class=Formatter, help='train (the default command)',
                       description=top.description + ' See also: distsoftmax evaluate --help.',
                       epilog=top.epilog)
    t.add_argument('--epochs', type=_positive(int), default=DEFAULTS['epochs'],
                   help='epochs to train, in all (a resumed run counts the ones already done)')
    t.add_argument('--batch-size', type=_positive(int), default=DEFAULTS['batch_size'],
                   help='global batch size, split over all workers and devices; must be '
                        'divisible by workers x devices')
    t.add_argument('--lr', type=_positive(float), default=DEFAULTS['lr'],
                   help='SGD learning rate (not rescaled by the worker count)')
    t.add_argument('--seed', type=_seed, default=DEFAULTS['seed'],
                   help='seed of the initial weights and of every epoch\'s shuffle')
    _data_flags(t)
    t.add_argument('--backend', default='auto',
                   choices=('auto', 'local', 'devices', 'horovod', 'mpi'),
                   help='auto: horovod under horovodrun; under mpirun horovod if built, else mpi; '
                        'otherwise local or devices by --devices')
    t.add_argument('--fp16-allreduce', action='store_true',
                   help='compress gradients to fp16 for the allreduce (horovod backend only)')
    t.add_argument('--checkpoint-dir', metavar='DIR',
                   help='after every epoch, rank 0 writes model.params, trainer.states and '
                        'state.json here, atomically')
    t.add_argument('--resume', action='store_true',
                   help='continue from the last completed epoch in --checkpoint-dir '
                        '(starts fresh, and says so, if there is none)')
    t.add_argument('--metrics', metavar='FILE.jsonl',
                   help='write one JSON object per epoch, then a summary object')
    t.add_argument('--plot', metavar='FILE.png', help='plot loss and accuracy per epoch')
    t.add_argument('--quiet', action='store_true',
                   help='no progress bar and no epoch lines; errors and the summary still print')

    e = sub.add_parser('evaluate', formatter_class=Formatter,
                       help='test accuracy, per-class accuracy and confusion matrix of a checkpoint',
                       description='Evaluate the checkpoint in --checkpoint-dir on the test set.')
    e.add_argument('--checkpoint-dir', metavar='DIR', required=True,
                   help='a directory written by train --checkpoint-dir')
    _data_flags(e)
    e.add_argument('--plot', metavar='FILE.png', help='draw the confusion matrix')
    return top


def parse_args(argv):
    argv = list(argv)
    if not argv or argv[0] not in ('train', 'evaluate'):  # --help too: train's flags
        argv.insert(0, 'train')
    p = parser()
    args = p.parse_args(argv)
    sub = p._subparsers._group_actions[0].choices[args.command]
    if args.command == 'train' and args.resume and not args.checkpoint_dir:
        sub.error('--resume needs --checkpoint-dir DIR')
    if args.command == 'train' and args.batch_size < 1:
        sub.error('--batch-size must be positive')
    return args


class Fault:
    """Fault injection for the tests, from DISTSOFTMAX_FAULT, e.g.
    'sleep=0.01' (seconds per step) or 'crash_after=model.params@2' (exit
    abruptly after writing that checkpoint file of epoch 2)."""

    def __init__(self, spec):
        opts = dict(kv.split('=', 1) for kv in spec.split(',') if '=' in kv)
        self.sleep = float(opts.get('sleep', 0))
        name, _, epoch = opts.get('crash_after', '').partition('@')
        self.crash_file, self.crash_epoch = name, int(epoch or 0)
        self.epoch = 0

    def step(self, epoch, step):
        self.epoch = epoch + 1
        if self.sleep:
            time.sleep(self.sleep)

    def file_written(self, name):
        if name == self.crash_file and self.epoch == self.crash_epoch:
            os._exit(9)


def _math_flags(args):
    data = f'synthetic:{args.synthetic}' if args.synthetic else 'fashion-mnist'
    return {'batch_size': args.batch_size, 'lr': args.lr, 'seed': args.seed, 'data': data}


def _load_data(args):
    from . import data
    if args.synthetic:
        return data.synthetic(args.seed, args.synthetic)
    return data.load(args.data_dir, verify=not args.no_verify)


class _Prefetch:
    """The data set, read on a second thread while mxnet imports: that import
    is about 2 s of Python on one core, and zlib and SHA-256 release the GIL,
    so the read (about 0.9 s) hides behind it. Only a directory given or the
    Debian package's is read here; the download cache is left to the main
    thread, which checks and repairs it under its lock, with a progress bar."""

    def __init__(self, args):
        from . import data  # numpy imported here, not concurrently with mxnet's import
        self.args, self.data, self.error = args, None, None
        self.thread = threading.Thread(target=self._read, name='distsoftmax-data', daemon=True)
        self.thread.start()

    def _read(self):
        from . import data
        try:
            if not self.args.synthetic and \
                    data.locate(self.args.data_dir, download=False) == data.cache_dir():
                return  # get() reads it in the main thread, through _download's checks
        except data.DataError:
            return  # nothing on disk: get() reads (or downloads) in the main thread
        try:
            self.data = _load_data(self.args)
        except BaseException as e:  # raised again in the main thread
            self.error = e

    def wait(self):
        self.thread.join()

    def get(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.data if self.data is not None else _load_data(self.args)


def train(args):
    pending = _Prefetch(args)
    from . import checkpoint, layout as layouts, report, shard, train as loop  # imports mxnet

    t_start = time.perf_counter()
    pending.wait()  # the read is done before MPI starts (its memory hooks), errors come later
    layout = layouts.make(args.backend, args.devices)
    main = layout.is_main  # rank 0 logs and writes files
    say = print if main and not args.quiet else (lambda *a, **k: None)
    shard.check_batch(args.batch_size, layout.size * len(layout.contexts))
    if args.fp16_allreduce and layout.name != 'horovod':
        raise layouts.UserError('--fp16-allreduce needs the horovod backend')
    if main:
        for flag, path in (('--metrics', args.metrics), ('--plot', args.plot)):
            if path:
                report.check_output_file(flag, path)
        if args.checkpoint_dir:
            checkpoint.check_writable(args.checkpoint_dir)
    dev = loop.DeviceData(pending.get(), layout.contexts)
    net = loop.build_net(args.seed, layout.contexts)
    flags = _math_flags(args)

    state = None
    if args.resume and main:
        state = checkpoint.read_state(args.checkpoint_dir)
        if state is None:
            print(f'no checkpoint in {args.checkpoint_dir}: starting fresh', file=sys.stderr)
        else:
            checkpoint.check_math(state, flags, args.checkpoint_dir)
            checkpoint.load_params(args.checkpoint_dir, state, net, layout.contexts)
    start_epoch = int(layout.broadcast_value([state['epoch'] if state else 0])[0])
    history = list(state['metrics']) if state else []
    layout.broadcast(net.collect_params())  # distributed: every rank starts from rank 0's weights
    trainer = layout.trainer(net.collect_params(), args.lr, args.fp16_allreduce)
    if state:
        checkpoint.load_trainer(args.checkpoint_dir, state, trainer)
        say(f'resumed from {args.checkpoint_dir} after epoch {start_epoch}')
    if start_epoch >= args.epochs:
        say(f'already trained {start_epoch} epochs (--epochs {args.epochs}): nothing to do')

    fault = Fault(os.environ['DISTSOFTMAX_FAULT']) if os.environ.get('DISTSOFTMAX_FAULT') else None
    progress = ((lambda epoch: report.progress_bar(True, epoch, args.epochs))
                if main and not args.quiet else None)

    def on_epoch(epoch, metrics, trainer):
        history.append(metrics)
        say(report.epoch_line(metrics), flush=True)
        if not main:
            return
        if args.checkpoint_dir:
            checkpoint.save(args.checkpoint_dir, net, trainer,
                            {'epoch': epoch, 'flags': flags, 'metrics': history}, fault)
        if args.metrics:
            report.write_metrics(args.metrics, history)

    t_train = time.perf_counter()
    loop.fit(net, layout, dev, args, start_epoch, trainer, on_epoch, progress, fault)
    seconds = time.perf_counter() - t_train
    in_sync = replicas_identical(net, layout)
    done = history[-1] if history else None
    trained = sum(m['samples_per_s'] * m['seconds'] for m in history[start_epoch:])
    summary = {'summary': True, 'epochs': len(history),
               'test_acc': done['test_acc'] if done else None,
               'seconds': seconds, 'samples_per_s': trained / seconds if seconds else 0.0,
               'total_seconds': time.perf_counter() - t_start,
               'layout': layout.name, 'world_size': layout.size, 'devices': len(layout.contexts),
               'replicas_identical': in_sync}
    if main:
        if args.metrics:
            report.write_metrics(args.metrics, history, summary)
        if args.plot and history:
            report.plot_history(args.plot, history)
        if done:
            print(f"done: {layout.describe()}, {len(history)} epochs, {seconds:.1f} s training, "
                  f"final test acc {done['test_acc']:.4f}", flush=True)
    if not in_sync:
        raise layouts.LayoutError('the replicas hold different parameters after training')
    _close(layout)


def replicas_identical(net, layout):
    """Every rank and context holds bit-identical parameters (digests, summed)."""
    import hashlib
    import numpy as np
    mine = []
    for p in net.collect_params().values():
        per_ctx = {hashlib.sha256(d.asnumpy().tobytes()).digest()[:4] for d in p.list_data()}
        if len(per_ctx) > 1:
            return False
        mine.append(int.from_bytes(per_ctx.pop(), 'big'))
    mine = np.array(mine, dtype=np.float64)
    return bool(np.all(layout.allreduce(mine) == mine * layout.size))


def evaluate(args):
    from . import checkpoint, layout as layouts, report, train as loop
    from .errors import CheckpointError

    state = checkpoint.read_state(args.checkpoint_dir)
    if state is None:
        raise CheckpointError(f'{os.path.join(args.checkpoint_dir, checkpoint.STATE)}: missing; '
                              'pass a directory written by train --checkpoint-dir')
    if args.plot:
        report.check_output_file('--plot', args.plot)
    # synthetic data is drawn from the run's seed and size: evaluate the same set
    args.seed = state['flags'].get('seed', 0)
    trained_on = str(state['flags'].get('data', ''))
    if args.synthetic and trained_on.startswith('synthetic:'):
        args.synthetic = int(trained_on.split(':')[1])
    layout = layouts.make('auto' if not args.devices or ',' not in args.devices else 'devices',
                          args.devices)
    dev = loop.DeviceData(_load_data(args), layout.contexts)
    net = loop.build_net(0, layout.contexts)
    checkpoint.load_params(args.checkpoint_dir, state, net, layout.contexts)
    correct, n, matrix = loop.predict_counts(net, dev, layout, confusion=True)
    if layout.is_main:
        print(f"checkpoint {args.checkpoint_dir} (epoch {state['epoch']}): "
              f"test acc {correct / n:.4f} ({int(correct)}/{n})")
        print('per-class accuracy:')
        print(report.per_class_table(matrix))
        print('confusion matrix (rows: true class, columns: predicted):')
        print(report.confusion_table(matrix))
        if args.plot:
            report.plot_confusion(args.plot, matrix)
    _close(layout)


_closed = []  # the layouts this process shut down cleanly; run() checks it


def _close(layout):
    layout.close()
    _closed.append(layout)


def _terminate(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _fixed_mmap_threshold():
    """glibc raises its mmap threshold after each big free, so the next few-MB
    buffers land on the heap and stay resident once freed; a fixed threshold
    hands them back (about 30 MB less peak RSS per worker)."""
    try:
        import ctypes
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD, 1 MiB
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def _python_distutils():
    """mxnet imports distutils.version when it loads. With setuptools in the
    venv, setuptools' import hook answers with its own copy, which first
    imports all of setuptools (0.22 s of a 5 s run); Python 3.11's module does
    the same job, and nothing here uses setuptools."""
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


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # read when mxnet (and its OpenBLAS) load: this model's ops, a 256x784 by
    # 784x10 product at most, are too small to split, and 2 threads per
    # process ran 1.2-1.3x slower than 1 on 2 cores; the user's value wins
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    _python_distutils()
    _fixed_mmap_threshold()
    signal.signal(signal.SIGTERM, _terminate)  # stop like Ctrl-C: the last checkpoint stays whole
    from .errors import UserError
    try:
        (train if args.command == 'train' else evaluate)(args)
    except UserError as e:
        if args.debug:
            raise
        print(f'distsoftmax: error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        where = getattr(args, 'checkpoint_dir', None)
        kept = f'; the last completed epoch stays in {where}' if where else ''
        print(f'distsoftmax: interrupted ({e or "SIGINT"}){kept}', file=sys.stderr)
        return 130
    return 0


def run():
    """The command (python -m distsoftmax, the distsoftmax script): main(), then,
    once the layout has shut its communicator down, an exit that runs the exit
    handlers but skips the interpreter's teardown of mxnet (0.2-0.3 s of freeing
    its engine and thousands of generated functions). Every file is closed by
    then; any other ending exits the normal way."""
    code = main()
    if code == 0 and _closed and 'mxnet' in sys.modules:
        sys.modules['mxnet'].nd.waitall()
        atexit._run_exitfuncs()  # mxnet's, matplotlib's, Horovod's
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            code = 1  # a closed pipe: say so by the exit code, as the normal exit would
        os._exit(code)
    return code


if __name__ == '__main__':
    sys.exit(run())
