"""distsoftmax from Python: train() and evaluate(), the CLI's commands as calls.

    import distsoftmax
    run = distsoftmax.train(epochs=5, devices='cpu:2', checkpoint_dir='runs/ck')
    run.history[-1]['test_acc'], run.net, run.predict(images)
    distsoftmax.evaluate(checkpoint_dir='runs/ck').confusion

Keywords are the CLI's flags with _ for - (`distsoftmax train --help`), checked
by the same parser. A call owns its signal handlers, layout and locks for its
duration only (session.py): SIGINT stops it after the current step with
distsoftmax.Interrupted (a KeyboardInterrupt), and a second call in the same
process starts from nothing. Errors are raised as distsoftmax.UserError's family,
with the CLI's one-line message and exit_code. Under horovodrun, mpirun or srun
every rank calls it and gets its result; an error is agreed as the CLI's is, and
a failure of one rank alone still ends the whole job.
"""
from . import cli, config, ending, startup
from .session import Session


def train(**options):
    """Train, as `distsoftmax train` with these flags; returns a result.Trained
    (history, summary, checkpoint_dir, net, predict()), or None for dry_run=True.

    Raises UsageError (exit_code 2) for an unknown keyword or a bad value, the
    other UserErrors for data, checkpoints and failed ranks, Interrupted on a signal."""
    return _call('train', options)


def evaluate(**options):
    """Evaluate a checkpoint, as `distsoftmax evaluate`; returns a result.Evaluated
    (test_acc, correct, total, confusion, per_class_acc, classes, net, predict())."""
    return _call('evaluate', options)


def run(cfg, session):
    """The command of a configuration (config.Train or config.Evaluate) in a
    session: what train(), evaluate() and the CLI all call."""
    startup.prepare()
    if isinstance(cfg, config.Env):
        from . import environment
        return environment.main(as_json=cfg.as_json)
    from . import data       # numpy and its BLAS: after prepare() set their threads
    pending = data.prefetch(cfg.data, cfg.seed) if isinstance(cfg, config.Train) else None
    from . import job        # mxnet: its import overlaps the data read
    return job.train(cfg, session, pending) if pending else job.evaluate(cfg, session)


def _call(command, options):
    cfg, debug = cli.parse(cli.argv_of(command, options))
    with Session(cli=False) as session:
        try:
            return run(cfg, session)
        except BaseException as e:  # noqa: B036: a rank's failure must end the job, whatever it is
            error, _ = ending.end(e, session, debug)
            if error is e:
                raise
            raise error from None
