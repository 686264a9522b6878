"""The run as a recipe: train() and evaluate(), each read top to bottom.

Every line marked `# distributed:` is where the job's ranks talk to each other.
Both take a configuration and the call's session (session.py), and return what
the run produced (result.py); errors are raised, as errors.py's classes.
Importing this module loads mxnet (about 2 s of one core): api.run() starts
the data read first, so that the two overlap.
"""
import json
import time

from . import checkpoint, data as datasets, elastic, files, layout as layouts, loop, model, report, result, shard
from .errors import CheckpointError, Interrupted, LayoutError, UsageError
from .task import Task


def train(cfg, session, pending):
    """pending: data.prefetch(cfg.data, cfg.seed), started before this module's import."""
    if elastic.active():        # horovodrun --min-np/--host-discovery-script: elastic.py's recipe
        return elastic.train(cfg, session, pending)
    task = Task.of(cfg)
    t_start = time.perf_counter()
    pending.wait()                                         # done before MPI starts (its memory hooks)
    layout = layouts.start(cfg.layout, cfg.devices, session, cfg.timeout)              # distributed: join the job
    data, plan, state = layout.agree(lambda: _checks(cfg, task, layout, pending, session))  # distributed
    log = report.Log(main=layout.is_main, quiet=cfg.quiet, timestamps=cfg.timestamps)
    if cfg.dry_run:
        log.always(f'dry run: {layout.describe()}, {len(plan.step_sizes)} steps an epoch: every check passed')
        layout.close()
        return None
    if cfg.resume and state is None:
        log.warn(f'no checkpoint in {cfg.checkpoint_dir}: starting fresh')
    device_data = loop.DeviceData(data, layout.contexts)
    net = model.build_net(task, layout.contexts)
    trainer = layout.trainer(net.collect_params(), task.optimizer, cfg.fp16_allreduce)
    done = checkpoint.restore(cfg.checkpoint_dir, state, net, trainer, layout)  # distributed: rank 0's state
    history = list(state['metrics']) if state else []
    log.resumed(cfg, done)
    t_train = time.perf_counter()
    try:
        for metrics in loop.fit(net=net, trainer=trainer, layout=layout, data=device_data, plan=plan,
                                task=task, epochs=range(done, cfg.epochs), signals=session.signals,
                                progress=log.progress(cfg.epochs)):
            history.append(metrics)
            if layout.is_main:
                layout.mark(f"writing epoch {metrics['epoch']}'s checkpoint and metrics")
                _save(cfg, task, net, trainer, history, data)
            log.epoch(metrics, saved_in=cfg.checkpoint_dir)
        session.signals.check(cfg.epochs - 1)              # a signal after the last step still counts
    except Interrupted as e:
        raise Interrupted(e.signum, _kept(str(e), cfg, history)) from None
    seconds = time.perf_counter() - t_train
    in_sync = layout.replicas_identical(net.collect_params())   # distributed: digests compared
    summary = report.summary(history, done, seconds, time.perf_counter() - t_start, layout, in_sync)
    if layout.is_main:
        _finish(cfg, task, history, summary, log)
    if not in_sync:
        raise LayoutError('the replicas hold different parameters after training')
    layout.close()                                         # distributed: leave the job
    return result.Trained(history=history, summary=summary, checkpoint_dir=cfg.checkpoint_dir, net=net,
                          task=task, rank=layout.rank)


def _checks(cfg, task, layout, pending, session):
    """Every check that can fail before training; rank 0 alone checks the files it writes."""
    data = pending.get()
    plan = shard.EpochPlan(samples=len(data.train_labels), batch_size=task.batch_size, workers=layout.size,
                           devices=len(layout.contexts), drop_last=task.drop_last)
    if cfg.fp16_allreduce and layout.name != 'horovod':
        raise UsageError('--fp16-allreduce needs the horovod layout')
    state = None
    if layout.is_main:
        for flag, path in (('--metrics', cfg.metrics), ('--plot', cfg.plot)):
            if path:
                files.check_output_file(flag, path)
        if cfg.checkpoint_dir:
            state = checkpoint.open_for_training(cfg.checkpoint_dir, resume=cfg.resume, overwrite=cfg.overwrite,
                                                 flags=task.math_flags(data.identity), session=session)
    return data, plan, state


def _save(cfg, task, net, trainer, history, data):
    try:
        if cfg.checkpoint_dir:
            checkpoint.save(cfg.checkpoint_dir, net, trainer,
                            {'epoch': history[-1]['epoch'], 'flags': task.math_flags(data.identity),
                             'metrics': history})
        if cfg.metrics:
            report.write_metrics(cfg.metrics, history)
    except OSError as e:   # a full disk, a lost mount: the last complete checkpoint stays whole
        raise CheckpointError(f"{e.filename or cfg.checkpoint_dir}: cannot write epoch {history[-1]['epoch']} "
                              f'({e.strerror}); the last complete checkpoint stays') from None


def _kept(message, cfg, history):
    if not cfg.checkpoint_dir:
        return f'{message}; no --checkpoint-dir, so nothing was kept'
    if not history:
        return f'{message}; no epoch was completed, {cfg.checkpoint_dir} holds none'
    return f"{message}; the last completed epoch ({history[-1]['epoch']}) stays in {cfg.checkpoint_dir}"


def _finish(cfg, task, history, summary, log):
    if cfg.metrics:
        report.write_metrics(cfg.metrics, history, summary)
    if cfg.plot and history:
        report.plot_history(cfg.plot, history, report.run_title(task, summary))
    log.done(summary)


def evaluate(cfg, session):
    layout = layouts.start(cfg.layout, cfg.devices, session, cfg.timeout)              # distributed: join the job
    state = layout.agree(lambda: _read_checkpoint(cfg) if layout.is_main else None)
    identity, _ = layout.broadcast_text(json.dumps(state['flags']['data'], sort_keys=True)  # distributed
                                        if state else '')
    data = layout.agree(lambda: _evaluation_data(cfg, json.loads(identity)))  # distributed: one verdict
    task = Task(data=datasets.spec_of(data.identity))
    net = model.build_net(task, layout.contexts)
    epoch = checkpoint.restore(cfg.checkpoint_dir, state, net, None, layout)  # distributed: rank 0's weights
    session.signals.check(epoch)
    correct, matrix = loop.predict_counts(net, loop.DeviceData(data, layout.contexts), layout,
                                          num_classes=task.data.num_classes, confusion=True)
    session.signals.check(epoch)
    evaluation = result.Evaluated(checkpoint_dir=cfg.checkpoint_dir, epoch=epoch, correct=int(correct),
                                  total=len(data.test_labels), confusion=matrix, classes=task.data.classes,
                                  net=net, task=task, rank=layout.rank)
    if layout.is_main:
        report.evaluation(evaluation, plot=cfg.plot)
    layout.close()                                                          # distributed: leave the job
    return evaluation


def _read_checkpoint(cfg):
    state = checkpoint.read_state(cfg.checkpoint_dir)
    if state is None:
        raise CheckpointError(f'{cfg.checkpoint_dir}/{checkpoint.STATE}: missing; '
                              'pass a directory written by train --checkpoint-dir')
    checkpoint.verified_path(cfg.checkpoint_dir, state, checkpoint.MODEL)
    if cfg.plot:
        files.check_output_file('--plot', cfg.plot)
    return state


def _evaluation_data(cfg, trained_on):
    """The data the checkpoint was trained on; other data named by flags is refused."""
    asked = cfg.data
    if asked is not None and not _fits(asked, trained_on):
        what = f'--synthetic {asked.synthetic}' if asked.synthetic is not None else f'--data-dir {asked.data_dir}'
        raise UsageError(f'the checkpoint was trained on {datasets.describe(trained_on)}, not {what}; '
                         "evaluate uses the checkpoint's data: leave the data flags out")
    if 'synthetic' in trained_on:
        return datasets.synthetic(trained_on['seed'], trained_on['synthetic'])
    data = datasets.load(asked.data_dir if asked else None, verify=False)
    if data.identity.get('sha256') != trained_on.get('sha256'):
        raise datasets.DataError(f'{data.source}: {datasets.describe(data.identity)}, but the checkpoint '
                                 f'was trained on {datasets.describe(trained_on)}; pass that data with --data-dir')
    return data


def _fits(asked, trained_on):
    if 'synthetic' in trained_on:
        return asked.data_dir is None and asked.synthetic in (0, trained_on['synthetic'])
    return asked.synthetic is None
