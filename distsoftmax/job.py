"""The run as a recipe: train() and evaluate(), each read top to bottom.

Every line marked `# distributed:` is where the job's ranks talk to each other.
Both take a configuration and the call's session (session.py), and return what
the run produced (result.py); errors are raised, as errors.py's classes.
Importing this module loads mxnet (about 2 s of one core): api.run() starts
the data read first, so that the two overlap.
"""
import json
import time

from . import (checkpoint, data as datasets, elastic, files, launchers, layout as layouts, loop, model, records,
               report, result, shard)
from .errors import CheckpointError, Interrupted, LayoutError, OutputError, UsageError
from .task import Task

SAY_SYNTHETIC = 200_000     # synthetic samples that take seconds to make: a line says so
MAX_ELEMENTS = 2 ** 31 - 1   # elements of one NDArray in an mxnet built without USE_INT64_TENSOR_SIZE


def train(cfg, session, pending):
    """pending: data.prefetch(cfg.data, cfg.seed), started before this module's import."""
    if elastic.active():        # horovodrun --min-np/--host-discovery-script: elastic.py's recipe
        return elastic.train(cfg, session, pending)
    task = Task.of(cfg)
    t_start = time.perf_counter()
    if (cfg.data.synthetic or 0) >= SAY_SYNTHETIC and not cfg.quiet and launchers.rank() == 0:
        report.Log(main=True, timestamps=cfg.timestamps).warn(
            f'making {cfg.data.synthetic} synthetic samples (seed {cfg.seed})')
    pending.wait()                                         # done before MPI starts (its memory hooks)
    layout = layouts.start(cfg.layout, cfg.devices, session, cfg.timeout)              # distributed: join the job
    data, plan, state, start_from = layout.agree(lambda: _checks(cfg, task, layout, pending, session))  # distributed
    layout.agree_equal(datasets.digest(data.identity), what='data')     # distributed: the same data
    every_rank = layout.every_rank()                                        # distributed: hosts, devices
    log = report.Log(main=layout.is_main, quiet=cfg.quiet, timestamps=cfg.timestamps)
    session.timestamps = cfg.timestamps
    where = layout.describe(every_rank)
    if cfg.dry_run:
        log.always(f'dry run: {where}, {len(plan.step_sizes)} steps an epoch: every check passed')
        layout.close()
        return None
    if cfg.resume and state is None:
        log.warn(f'no checkpoint in {cfg.checkpoint_dir}: starting fresh')
    runlog = _records(cfg, task, layout, every_rank, session)
    device_data = loop.DeviceData(data, layout.contexts)
    net = model.build_net(task, layout.contexts)
    trainer = layout.trainer(net.collect_params(), task.bound_optimizer(plan), cfg.fp16_allreduce)
    if cfg.init_from:                                      # distributed: rank 0's weights, nothing else
        checkpoint.restore(*(start_from or (None, None)), net, None, layout)
    done = checkpoint.restore(cfg.checkpoint_dir, state, net, trainer, layout)  # distributed: rank 0's state
    history = list(state['metrics']) if state else []
    log.start(where=where, task=task, plan=plan, epochs=cfg.epochs, source=data.source, outputs=_outputs(cfg))
    log.resumed(cfg, done)
    t_train = time.perf_counter()
    try:
        for metrics, step_loss in loop.fit(net=net, trainer=trainer, layout=layout, data=device_data, plan=plan,
                                           task=task, epochs=range(done, cfg.epochs), signals=session.signals,
                                           progress=log.progress(cfg.epochs)):
            history.append(metrics)
            if layout.is_main:
                layout.mark(f"writing epoch {metrics['epoch']}'s checkpoint and metrics")
                _save(cfg, task, net, trainer, history, data)
                if runlog:
                    runlog.epoch(history, step_loss, first_step=(metrics['epoch'] - 1) * len(plan.step_sizes),
                                 title=report.run_title(task, layout, len(history)))
            log.epoch(metrics)
        session.signals.check(cfg.epochs - 1)              # a signal after the last step still counts
    except Interrupted as e:
        raise Interrupted(e.signum, _kept(str(e), cfg, history)) from None
    finally:
        log.close_bar()                                    # before any line that follows
    seconds = time.perf_counter() - t_train
    in_sync = layout.replicas_identical(net.collect_params())   # distributed: digests compared
    summary = report.summary(history, done, seconds, time.perf_counter() - t_start, layout, in_sync,
                             task=task, cfg=cfg, every_rank=every_rank)
    if layout.is_main:
        _finish(cfg, task, history, summary, log, runlog)
    if not in_sync:
        raise LayoutError('the replicas hold different parameters after training')
    layout.close()                                         # distributed: leave the job
    return result.Trained(history=history, summary=summary, checkpoint_dir=cfg.checkpoint_dir, net=net,
                          task=task, rank=layout.rank)


def _checks(cfg, task, layout, pending, session):
    """Every check that can fail before training; rank 0 alone checks the files it writes."""
    data = pending.get()
    elements = len(data.train_labels) * task.data.features
    if elements > MAX_ELEMENTS:
        raise UsageError(f'{len(data.train_labels)} training samples are {elements} elements on each device, '
                         f'past the {MAX_ELEMENTS} that the pip mxnet 1.9.1 indexes (it is built without '
                         f'64-bit tensor sizes): use at most {MAX_ELEMENTS // task.data.features} samples, or an '
                         'mxnet built with USE_INT64_TENSOR_SIZE=1')
    try:
        plan = shard.EpochPlan(samples=len(data.train_labels), batch_size=task.batch_size, workers=layout.size,
                               devices=len(layout.contexts), drop_last=task.drop_last)
    except UsageError as e:
        if cfg.resume and cfg.checkpoint_dir and 'not divisible' in str(e) and \
                checkpoint.read_state(cfg.checkpoint_dir) is not None:
            parts = layout.size * len(layout.contexts)
            fits = ', '.join(str(k) for k in range(1, task.batch_size + 1) if task.batch_size % k == 0 and k != parts)
            raise UsageError(f'--batch-size {task.batch_size}, the checkpoint\'s, is not divisible by workers x '
                             f'devices = {parts}: resume it at a world size that divides it ({fits}), or '
                             'start another --checkpoint-dir') from None
        raise
    if cfg.fp16_allreduce and layout.name != 'horovod':
        raise UsageError('--fp16-allreduce needs the horovod layout')
    state = start_from = None
    if layout.is_main:
        for flag, path in (('--metrics', cfg.metrics), ('--plot', cfg.plot)):
            if path:
                files.check_output_file(flag, path)
        if cfg.log_dir:
            records.check(cfg.log_dir)
        if cfg.checkpoint_dir:
            state = checkpoint.open_for_training(cfg.checkpoint_dir, resume=cfg.resume, overwrite=cfg.overwrite,
                                                 flags=task.math_flags(data.identity), session=session,
                                                 keep=_keep(cfg))
        if cfg.init_from:
            start_from = checkpoint.init_from(cfg.init_from, data.identity)
    return data, plan, state, start_from


def _keep(cfg):
    return checkpoint.Keep(last=cfg.keep, best=cfg.keep_best)


def _save(cfg, task, net, trainer, history, data):
    """Rank 0, after every epoch. Raises CheckpointError or OutputError naming the
    path and what was kept: the previous checkpoint stays whole whatever happens."""
    if cfg.checkpoint_dir:
        checkpoint.save(cfg.checkpoint_dir, net, trainer,
                        {'epoch': history[-1]['epoch'], 'flags': task.math_flags(data.identity),
                         'metrics': history}, keep=_keep(cfg))
    if cfg.metrics:
        try:
            report.write_metrics(cfg.metrics, history)
        except OutputError as e:
            raise OutputError(f'{e}; {_kept_checkpoint(cfg, len(history))}') from None


def _kept_checkpoint(cfg, epoch):
    if not cfg.checkpoint_dir:
        return 'no --checkpoint-dir, so nothing was kept'
    return f'the checkpoint of epoch {epoch} stays in {cfg.checkpoint_dir}'


def _kept(message, cfg, history):
    if not cfg.checkpoint_dir:
        return f'{message}; no --checkpoint-dir, so nothing was kept'
    if not history:
        return f'{message}; no epoch was completed, {cfg.checkpoint_dir} holds none'
    return f"{message}; the last completed epoch ({history[-1]['epoch']}) stays in {cfg.checkpoint_dir}"


def _records(cfg, task, layout, every_rank, session):
    """Rank 0's --log-dir run directory (records.py), closed with the session; else None."""
    if not (cfg.log_dir and layout.is_main):
        return None
    runlog = records.Records(cfg.log_dir, cfg=cfg, task=task, layout=layout, every_rank=every_rank,
                             started=report.stamp())
    session.callback(runlog.close)
    return runlog


def _outputs(cfg):
    """[(what, path)] of what the run writes, for the start and done lines."""
    return [(what, path) for what, path in (('checkpoints', cfg.checkpoint_dir), ('metrics', cfg.metrics),
                                            ('log dir', cfg.log_dir), ('plot', cfg.plot)) if path]


def _finish(cfg, task, history, summary, log, runlog):
    """Rank 0, after training: the metrics' summary, the plot, the done line; a
    write that fails is said once, after the done line, naming what was kept."""
    kept = _kept_checkpoint(cfg, len(history))
    failed = []
    title = report.run_title(task, None, len(history), summary=summary)
    for write in (lambda: cfg.metrics and report.write_metrics(cfg.metrics, history, summary),
                  lambda: runlog and runlog.finish(history, summary),
                  lambda: cfg.plot and history and report.plot_history(cfg.plot, history, title)):
        try:
            write()
        except OutputError as e:
            failed.append(str(e))
    log.done(summary, outputs=_outputs(cfg))
    if failed:
        raise OutputError('; '.join(failed) + f'; {kept}')
    log.check_streams(kept)


def evaluate(cfg, session):
    layout = layouts.start(cfg.layout, cfg.devices, session, cfg.timeout)              # distributed: join the job
    state = layout.agree(lambda: _read_checkpoint(cfg) if layout.is_main else None)
    identity, _ = layout.broadcast_text(json.dumps(state['flags']['data'], sort_keys=True)  # distributed
                                        if state else '')
    data = layout.agree(lambda: _evaluation_data(cfg, json.loads(identity)))  # distributed: one verdict
    task = Task(data=datasets.spec_of(data.identity))
    net = model.build_net(task, layout.contexts)
    epoch = checkpoint.restore(checkpoint.locate(cfg.checkpoint_dir)[0], state, net, None,  # distributed: rank 0's
                               layout)                                                    # weights
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
    base, state = checkpoint.locate(cfg.checkpoint_dir)
    if state is None:
        raise CheckpointError(f'{cfg.checkpoint_dir}/{checkpoint.STATE}: missing; '
                              'pass a directory written by train --checkpoint-dir')
    checkpoint.verified_path(base, state, checkpoint.MODEL)
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
