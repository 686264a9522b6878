"""The run as a recipe: train() and evaluate(), each read top to bottom.

Every line marked `# distributed:` is where the job's ranks talk to each other.
"""
import time

from . import data as datasets
from .errors import CheckpointError, Interrupted, UsageError


def train(cfg):
    pending = datasets.prefetch(cfg.data, cfg.seed)       # the read overlaps mxnet's import
    from . import checkpoint, layout as layouts, loop, model, report, signals
    t_start = time.perf_counter()
    pending.wait()                                         # done before MPI starts (its memory hooks)
    layout = layouts.start(cfg.layout, cfg.devices)       # distributed: join the job
    data, plan, state = layout.agree(lambda: _checks(cfg, layout, pending))  # distributed: one verdict
    log = report.Log(layout.is_main, cfg.quiet, cfg.timestamps)
    if cfg.dry_run:
        log.always(f'dry run: {layout.describe()}, {len(plan.step_sizes)} steps an epoch: every check passed')
        return layout.close()
    if cfg.resume and state is None:
        log.warn(f'no checkpoint in {cfg.checkpoint_dir}: starting fresh')
    device_data = loop.DeviceData(data, layout.contexts)
    net = model.build_net(cfg.seed, layout.contexts)
    trainer = layout.trainer(net.collect_params(), cfg.lr, cfg.fp16_allreduce)
    done = checkpoint.restore(cfg.checkpoint_dir, state, net, trainer, layout)  # distributed: rank 0's state
    history = list(state['metrics']) if state else []
    log.resumed(cfg, done)
    t_train = time.perf_counter()
    try:
        for metrics in loop.fit(net, trainer, layout, device_data, plan, cfg.seed,
                                range(done, cfg.epochs), log.progress(cfg.epochs)):
            history.append(metrics)
            if layout.is_main:
                _save(cfg, net, trainer, history, data)
            log.epoch(metrics, saved_in=cfg.checkpoint_dir)
        signals.check(cfg.epochs - 1)                      # a signal after the last step still counts
    except Interrupted as e:
        raise Interrupted(e.exit_code - 128, _kept(str(e), cfg, history)) from None
    seconds = time.perf_counter() - t_train
    in_sync = layout.replicas_identical(net.collect_params())   # distributed: digests compared
    summary = report.summary(history, done, seconds, time.perf_counter() - t_start, layout, in_sync)
    if layout.is_main:
        _finish(cfg, history, summary, log)
    if not in_sync:
        raise layouts.LayoutError('the replicas hold different parameters after training')
    layout.close()                                         # distributed: leave the job


def _checks(cfg, layout, pending):
    """Every check that can fail before training; rank 0 alone checks the files it writes."""
    from . import checkpoint, files, shard
    data = pending.get()
    plan = shard.EpochPlan(len(data.train_labels), cfg.batch_size, layout.size, len(layout.contexts),
                           cfg.drop_last)
    if cfg.fp16_allreduce and layout.name != 'horovod':
        raise UsageError('--fp16-allreduce needs the horovod layout')
    state = None
    if layout.is_main:
        for flag, path in (('--metrics', cfg.metrics), ('--plot', cfg.plot)):
            if path:
                files.check_output_file(flag, path)
        if cfg.checkpoint_dir:
            state = checkpoint.open_for_training(cfg.checkpoint_dir, cfg.resume, cfg.overwrite,
                                                 math_flags(cfg, data))
    return data, plan, state


def math_flags(cfg, data):
    """What a checkpoint must share with a run that resumes it."""
    return {'batch_size': cfg.batch_size, 'lr': cfg.lr, 'seed': cfg.seed, 'drop_last': cfg.drop_last,
            'data': data.identity}


def _save(cfg, net, trainer, history, data):
    from . import checkpoint, report
    try:
        if cfg.checkpoint_dir:
            checkpoint.save(cfg.checkpoint_dir, net, trainer,
                            {'epoch': history[-1]['epoch'], 'flags': math_flags(cfg, data), 'metrics': history})
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


def _finish(cfg, history, summary, log):
    from . import report
    if cfg.metrics:
        report.write_metrics(cfg.metrics, history, summary)
    if cfg.plot and history:
        report.plot_history(cfg.plot, history, report.run_title(cfg, summary))
    log.done(summary)


def evaluate(cfg):
    from . import checkpoint, layout as layouts, loop, model, report
    layout = layouts.start(cfg.layout, cfg.devices)                       # distributed: join the job
    state = layout.agree(lambda: _read_checkpoint(cfg) if layout.is_main else None)
    identity, _ = layout.broadcast_text(_dumps(state['flags']['data']) if state else '')  # distributed
    data = layout.agree(lambda: _evaluation_data(cfg, _loads(identity)))  # distributed: one verdict
    net = model.build_net(0, layout.contexts)
    epoch = checkpoint.restore(cfg.checkpoint_dir, state, net, None, layout)  # distributed: rank 0's weights
    correct, matrix = loop.predict_counts(net, loop.DeviceData(data, layout.contexts), layout, confusion=True)
    if layout.is_main:
        classes = datasets.class_names(data.identity)
        report.evaluation(cfg, epoch, correct, len(data.test_labels), matrix, classes)
    layout.close()                                                          # distributed: leave the job


def _read_checkpoint(cfg):
    from . import checkpoint, files
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


def _dumps(value):
    import json
    return json.dumps(value, sort_keys=True)


def _loads(text):
    import json
    return json.loads(text)
