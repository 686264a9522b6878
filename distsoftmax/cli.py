"""python -m distsoftmax [train|evaluate] ...: flags, a typed configuration,
errors to exit codes, and the entry point. The run itself is job.py; the
Python API (api.py) takes the same flags as keywords.

Under a launcher every rank parses the same flags; a line is printed once per
job, by rank 0 (README: "Errors and exit codes").
"""
import argparse
import os
import sys
import textwrap

from . import __version__, config, ending, launchers, startup, watchdog
from .errors import UsageError
from .session import Session

COMMANDS = ('train', 'evaluate', 'env')
USAGE = 'distsoftmax [train|evaluate|env] [flags]'
FLOAT32_MAX = 3.4028234663852886e38
EXIT_CODES = textwrap.fill(
    'exit codes: 0 done; 1 a run error (data, checkpoint, divergence, a failed or stalled rank, '
    'an output that cannot be written); 2 bad flags; 130 SIGINT; 138 SIGUSR1 (a graceful stop, '
    "as Slurm's --signal=USR1@T asks); 141 stdout closed; 143 SIGTERM (a launcher reports its own)",
    79, subsequent_indent='  ')
ENVIRONMENT = '''environment:
  DISTSOFTMAX_DATA        the data directory, if --data-dir is not given
  XDG_CACHE_HOME          where downloads are cached (default: ~/.cache)
  DISTSOFTMAX_MIRROR      base URL to download the four files from (default:
                          the upstream Fashion-MNIST location)
  DISTSOFTMAX_TIMESTAMPS  1: as --timestamps
  DISTSOFTMAX_TIMEOUT     seconds: as --timeout
  DISTSOFTMAX_NO_QUICK_EXIT  1: exit through the interpreter's own teardown
  DISTSOFTMAX_COMMIT_STEPS  steps between two commits under horovodrun's elastic
                          mode (launch/elastic.sh; default 32)
set where you have not set them:
  OMP_NUM_THREADS=1       MXNet's threads per process (the ops are too small to split)
  OMPI_MCA_mpi_yield_when_idle=1   on CPU under MPI: waiting ranks leave the cores
  HOROVOD_CYCLE_TIME=0.1  ms, under Horovod on CPU with every rank on one host
  OMPI_MCA_btl=^openib,ofi  under horovodrun, in place of its "^openib"
distsoftmax --version prints the version.
'''


def _number(kind, high=float('inf')):
    """A positive int or float below high (float32's largest, for a learning rate)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not 0 < value < high:
            below = f' below {high:.4g}' if high < float('inf') else ''
            raise argparse.ArgumentTypeError(f'{text} must be a positive number{below}')
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


def _warmup(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 <= value < float('inf'):
        raise argparse.ArgumentTypeError(f'{text} must be 0 or more')
    return value


def _devices(text):
    try:
        return config.Devices.parse(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix('--devices ')) from None


class _Parser(argparse.ArgumentParser):
    """One line for an error, not argparse's usage block (clusters grep logs line
    by line), printed by rank 0 alone."""

    def error(self, message):
        raise UsageError(f'{message} (see --help)')

    def _print_message(self, message, file=None):
        if launchers.rank() == 0:
            super()._print_message(message, file)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action):
        if action.default is not None and action.default is not False and \
                action.default != argparse.SUPPRESS and action.help:
            return action.help + ' (default: %(default)s)'
        return action.help


def _data_flags(p, synthetic_const):
    g = p.add_mutually_exclusive_group()
    g.add_argument('--data-dir', metavar='DIR',
                   help='directory with the four Fashion-MNIST IDX .gz files (default: $DISTSOFTMAX_DATA, '
                        'then /usr/share/datasets/fashion-mnist, then ~/.cache/distsoftmax/fashion-mnist, '
                        'else download there)')
    g.add_argument('--synthetic', nargs='?', const=synthetic_const, type=_number(int), metavar='N',
                   help='N deterministic synthetic training samples (N/6 test samples), drawn from '
                        '--seed, instead of the real data (N: 60000 if left out)' if synthetic_const else
                        "the checkpoint's synthetic data (N, if given, must be its size)")
    p.add_argument('--no-verify', action='store_true',
                   help="skip the check of the files' SHA-256 against Fashion-MNIST's (for other IDX data "
                        'such as MNIST); the strict format checks still run')
    p.add_argument('--devices', metavar='SPEC', type=_devices,
                   help='cpu, cpu:N (N CPU contexts), gpu, gpu:K, gpu:0,1 or gpu:all (default: gpu:0 if '
                        'a GPU is visible, else cpu; under horovod or mpi one device per process, the GPU '
                        'of its local rank)')
    p.add_argument('--layout', '--backend', dest='layout', default='auto', choices=config.LAYOUTS, metavar='LAYOUT',
                   help='where the work runs: %(choices)s (--backend is its older name). auto: horovod under '
                        'horovodrun; under another launcher of several ranks horovod if built, else '
                        'mpi; otherwise local, or devices for several --devices')
    p.add_argument('--timeout', metavar='SECONDS', type=_number(float),
                   help='under a launcher, the longest any rank may wait for its peers or make no step; '
                        'then the job ends with one line naming where it waited and which ranks did not '
                        f'answer. Start-up gets max(600, SECONDS) (default: $DISTSOFTMAX_TIMEOUT, else '
                        f'{watchdog.DEFAULT_TIMEOUT:g})')
    p.add_argument('--debug', action='store_true', help='show tracebacks of errors')


def parser():
    top = _Parser(prog='distsoftmax', usage=USAGE,
                  description=textwrap.fill('Data-parallel softmax regression (Dense(10)) on Fashion-MNIST with MXNet '
                              'Gluon. The same command runs on one CPU or GPU, on several devices '
                              '(--devices), under horovodrun, mpirun or srun; the math is the same in '
                              'every layout. "train" is the default command; "distsoftmax evaluate '
                              '--help" for evaluation; "distsoftmax env" reports what this machine gives a '
                              'run.', 79),
                  epilog='examples:\n'
                         '  python -m distsoftmax                         5 epochs on the CPU or GPU\n'
                         '  python -m distsoftmax --devices cpu:2         one process, 2 contexts\n'
                         '  horovodrun -np 4 python -m distsoftmax        4 Horovod workers\n'
                         '  mpirun -np 2 python -m distsoftmax --layout mpi\n'
                         '  HOSTFILE=hosts launch/elastic.sh              workers may leave and join\n'
                         '  python -m distsoftmax evaluate --checkpoint-dir runs/ckpt\n'
                         '  python -m distsoftmax env                     the build, GPUs, MPI, the data\n\n'
                         + ENVIRONMENT + '\n' + EXIT_CODES + '\n',
                  formatter_class=_Formatter)
    top.add_argument('--version', action='version', version=f'distsoftmax {__version__}')
    sub = top.add_subparsers(dest='command', metavar='{train,evaluate,env}', parser_class=_Parser)
    _train_flags(sub, top)
    _evaluate_flags(sub)
    e = sub.add_parser('env', prog='distsoftmax env', formatter_class=_Formatter, usage='distsoftmax env [--json]',
                       help="what this machine gives a run: the mxnet build, GPUs, Horovod's build, MPI, "
                            'the data, the launcher and the layout auto picks',
                       description='Report the environment a run would see, and what the package would pick.')
    e.add_argument('--json', action='store_true', help='as one JSON object')
    e.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    return top


def _train_flags(sub, top):
    t = sub.add_parser('train', prog='distsoftmax train', formatter_class=_Formatter, help='train (the default command)',
                       usage=USAGE, description=top.description, epilog=top.epilog)
    t.add_argument('--epochs', type=_number(int), default=5,
                   help='epochs to train, in all (a resumed run counts the ones already done)')
    t.add_argument('--batch-size', type=_number(int), default=256,
                   help='global batch: split over every worker and device, so it must be divisible by '
                        'workers x devices; every update divides by it, the last batch of an epoch too')
    t.add_argument('--lr', type=_number(float, high=FLOAT32_MAX), default=0.1,
                   help='SGD learning rate (not rescaled by the worker count)')
    t.add_argument('--lr-scaling', choices=('none', 'linear', 'sqrt'), default='none',
                   help='scale --lr for the global batch: lr x (batch / 256) (linear, Goyal et al. 2017) or '
                        'x sqrt(batch / 256); none keeps the textbook\'s math in every layout')
    t.add_argument('--warmup-epochs', type=_warmup, default=0.0, metavar='E',
                   help='raise the learning rate linearly, step by step, over the first E epochs (with '
                        '--lr-scaling linear for large batches, as Goyal et al. do)')
    t.add_argument('--seed', type=_seed, default=0, help="seed of the initial weights and every epoch's shuffle")
    t.add_argument('--drop-last', action='store_true',
                   help="skip each epoch's last, partial batch (PyTorch's drop_last=True)")
    _data_flags(t, 60000)
    t.add_argument('--fp16-allreduce', action='store_true',
                   help='compress gradients to fp16 for the allreduce (horovod layout only)')
    t.add_argument('--checkpoint-dir', metavar='DIR',
                   help='after every epoch rank 0 writes model.params, trainer.states and state.json here, '
                        'atomically; one run at a time')
    g = t.add_mutually_exclusive_group()
    g.add_argument('--resume', nargs='?', const=True, default=False, metavar='EPOCH_DIR',
                   help='continue from the last completed epoch in --checkpoint-dir (starts fresh, and '
                        'says so, if there is none), or from one of its kept epoch directories '
                        '(--resume epoch-0003)')
    t.add_argument('--init-from', metavar='CHECKPOINT',
                   help="start from a checkpoint's weights (a --checkpoint-dir or one of its epoch "
                        'directories): a fresh optimizer and epoch count, any --lr; its data must be '
                        "this run's")
    t.add_argument('--keep', type=_number(int), default=1, metavar='N',
                   help='epoch directories to keep in --checkpoint-dir: the last N')
    t.add_argument('--keep-best', action='store_true',
                   help='keep the epoch with the best test accuracy too')
    g.add_argument('--overwrite', action='store_true',
                   help='start over in a --checkpoint-dir that holds a checkpoint (replaced after the '
                        'first epoch)')
    t.add_argument('--metrics', metavar='FILE.jsonl', help='one JSON object per epoch, then a summary')
    t.add_argument('--plot', metavar='FILE.png', help='plot loss and accuracy per epoch')
    t.add_argument('--log-dir', metavar='DIR',
                   help='a run directory for other tools, written by rank 0 after every epoch: config.json '
                        '(every flag, versions, hosts, devices, start time, git commit), metrics.jsonl, '
                        'metrics.csv, TensorBoard events (loss and accuracies per epoch, loss per step), '
                        'history.png')
    t.add_argument('--quiet', action='store_true',
                   help='no progress bar and no epoch lines; errors and the done line still print')
    t.add_argument('--timestamps', action='store_true', help='an ISO 8601 time before each log line')
    t.add_argument('--dry-run', action='store_true',
                   help='every check before training (flags against the world size, data, output paths, '
                        'checkpoint) under the real launcher, then exit 0 without training')


def _evaluate_flags(sub):
    e = sub.add_parser('evaluate', prog='distsoftmax evaluate', formatter_class=_Formatter, usage='distsoftmax evaluate [flags]',
                       help='test accuracy, per-class accuracy and confusion matrix of a checkpoint',
                       description="Evaluate the checkpoint in --checkpoint-dir on its own data's test set.",
                       epilog=EXIT_CODES + '\n')
    e.add_argument('--checkpoint-dir', metavar='DIR', required=True,
                   help='a directory written by train --checkpoint-dir')
    _data_flags(e, 0)
    e.add_argument('--plot', metavar='FILE.png', help='draw the confusion matrix')


def _timeout(given):
    """--timeout, else DISTSOFTMAX_TIMEOUT, else watchdog.DEFAULT_TIMEOUT (s).
    Raises UsageError for an environment value that is no positive number."""
    text = os.environ.get('DISTSOFTMAX_TIMEOUT', '')
    if given is not None or not text:
        return given or watchdog.DEFAULT_TIMEOUT
    try:
        return _number(float)(text)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f'DISTSOFTMAX_TIMEOUT={text}: {e} (seconds, as --timeout)') from None


def parse(argv):
    """Flags -> a config.Train or config.Evaluate (argparse exits 2 on bad ones)."""
    argv = list(argv)
    if not argv or argv[0] not in COMMANDS + ('--version',):   # --help too: train's flags
        argv.insert(0, 'train')
    a = parser().parse_args(argv)
    if a.command == 'env':
        return config.Env(as_json=a.json), a.debug
    a.timeout = _timeout(a.timeout)
    given = a.data_dir is not None or a.synthetic is not None
    data = config.Data(data_dir=a.data_dir, synthetic=a.synthetic, verify=not a.no_verify)
    devices = a.devices or config.Devices()
    if a.command == 'evaluate':
        return config.Evaluate(checkpoint_dir=a.checkpoint_dir, data=data if given else None, devices=devices,
                               layout=a.layout, plot=a.plot, timeout=a.timeout), a.debug
    if a.init_from and a.resume:
        raise UsageError('--init-from starts a new run from weights, --resume continues one: pass one of them')
    if (a.resume or a.overwrite) and not a.checkpoint_dir:
        raise UsageError(f"{'--resume' if a.resume else '--overwrite'} needs --checkpoint-dir DIR")
    stamps = a.timestamps or os.environ.get('DISTSOFTMAX_TIMESTAMPS', '') not in ('', '0')
    return config.Train(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, lr_scaling=a.lr_scaling,
                        warmup_epochs=a.warmup_epochs, seed=a.seed, drop_last=a.drop_last,
                        data=data, devices=devices, layout=a.layout, fp16_allreduce=a.fp16_allreduce,
                        checkpoint_dir=a.checkpoint_dir, resume=a.resume, overwrite=a.overwrite,
                        init_from=a.init_from, keep=a.keep, keep_best=a.keep_best,
                        metrics=a.metrics, plot=a.plot, log_dir=a.log_dir, quiet=a.quiet, timestamps=stamps,
                        dry_run=a.dry_run, timeout=a.timeout), a.debug


def flags_of(command):
    """{keyword: (option string, argparse action)} of a command's flags: the
    keyword is the long flag with _ for - ('--checkpoint-dir' -> checkpoint_dir)."""
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = {}
    for action in sub.choices[command]._actions:
        for option in action.option_strings:
            if option.startswith('--') and option != '--help':
                found[option[2:].replace('-', '_')] = (option, action)
    return found


def argv_of(command, options):
    """The flags that keyword options stand for: True -> '--flag', False or None
    -> left out, any other value -> '--flag VALUE'. Raises UsageError for a
    keyword that is no flag of the command."""
    known, argv = flags_of(command), [command]
    for key, value in options.items():
        if key not in known:
            raise UsageError(f'{command}() has no option {key!r}; its keywords are the flags of '
                             f'`distsoftmax {command} --help` with _ for -: {", ".join(sorted(known))}')
        option, action = known[key]
        if value is None or value is False:
            continue
        takes_value = action.nargs != 0
        if value is True and (not takes_value or action.nargs == '?'):
            argv.append(option)
        elif not takes_value:
            raise UsageError(f'{command}({key}={value!r}): {option} is a switch; pass True or False')
        else:
            argv += [option, str(value)]
    return argv


def main(argv=None):
    """Run the command; return its exit code (never raises for a run's failure)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = '--debug' in argv
    with Session(cli=True) as session:
        try:
            cfg, debug = parse(argv)
            from . import api   # api imports this module
            api.run(cfg, session)
            return 0
        except SystemExit as e:           # argparse: --help, --version
            return ending.pause_unless_rank0(e.code or 0)
        except BaseException as e:        # noqa: B036: a rank's failure must end the job, whatever it is
            _, code = ending.end(e, session, debug)
            return code if session.layout is not None else ending.pause_unless_rank0(code)


def run():
    """The command (python -m distsoftmax, the distsoftmax script)."""
    # the layout has shut down (or aborted): mxnet's teardown would only cost time,
    # and after a signal its engine threads can end it in std::terminate (exit 134)
    return startup.quick_exit(main())


if __name__ == '__main__':
    sys.exit(run())
