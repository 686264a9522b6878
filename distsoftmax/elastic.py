"""Elastic training: workers leave and join a horovodrun job without a restart,
and the result stays the one-process result (README: "Elastic training").

horovodrun's elastic mode (-np N --min-np M [--max-np K] --host-discovery-script S)
sets HOROVOD_ELASTIC=1 in every worker; train() then runs here instead of
job.train. horovod.mxnet 0.28.1 has no elastic module, so this uses the
framework-neutral part, horovod.common.elastic.run_fn and State:

- A commit (every COMMIT_STEPS steps and at every epoch's end) copies to host
  memory what decides the rest of the run: the parameters, the optimizer's
  states and update count, the epoch and the global step within it, the
  epoch's per-step loss and accuracy sums so far (summed over the workers),
  the metrics of the epochs done, and the math flags with the data's identity.
- A worker that fails (an MXNetError from a broken Gloo ring, translated to
  HorovodInternalError) rolls back to the last commit; a host that the
  discovery script adds interrupts the next commit (HostsUpdatedInterrupt).
  Then the layout re-joins (MXNet's pending exception drained, hvd.shutdown,
  hvd.init), rank 0's commit is broadcast, and the body starts again: the
  checks are agreed for the new world size, the net and its
  DistributedTrainer are rebuilt (it fixes its averaging by size()), and the
  epoch plan for the new size replays the same global steps from the commit.
  Global step s is the same batch whatever the world size, and every update
  divides by the global batch, so the parameters follow the one-process run.
- Nothing collective runs before the body: a worker of a new host joins at a
  sync point, and every collective call is inside the body, where every rank
  makes the same ones in the same order.
- A world size that the global batch cannot be split over is refused by the
  agreed check (shard.EpochPlan's one line), before any step of that world.
- Checkpoints are job.py's (rank 0, atomic, locked): whoever is rank 0 holds
  the lock and writes them; a full stop resumes from them with --resume.
- A re-join that does not complete (fewer workers than --min-np within
  horovodrun's --elastic-timeout, then its SIGTERM) or any wait past
  --timeout ends the worker with one line.
"""
import copy
import os
import select
import signal
import sys
import threading
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, nd

from . import checkpoint, files, layout as layouts, loop, model, report, result, shard, startup
from . import watchdog as watchdogs
from .contexts import one_context
from .errors import Interrupted, LayoutError, UsageError
from .task import Task

COMMIT_STEPS = 32    # default steps between two commits (DISTSOFTMAX_COMMIT_STEPS): their cost is in
                     # bench/README.md (bench/elastic.py); a failure replays at most these
GLOO_TIMEOUT = 30    # s: HOROVOD_GLOO_TIMEOUT_SECONDS in elastic mode (horovodrun's own default)
TICK = 0.5           # s between two looks of the progress watch


def active(env=None):
    """Whether horovodrun started this process in its elastic mode."""
    env = os.environ if env is None else env
    return env.get('HOROVOD_ELASTIC') == '1'


def commit_steps(env=None):
    env = os.environ if env is None else env
    text = env.get('DISTSOFTMAX_COMMIT_STEPS', str(COMMIT_STEPS))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"DISTSOFTMAX_COMMIT_STEPS={text}: must be a positive integer (steps between commits)")
    return value


def _drain():
    """MXNet keeps a failed operation's exception and raises it again at the next
    waitall(): take it now, so that it cannot end a later, healthy phase."""
    for _ in range(4):
        try:
            nd.waitall()
            return
        except mx.base.MXNetError:
            continue


class Watch:
    """The elastic layout's watchdog. Each worker watches its own progress;
    waiting past the limit (--timeout once training began, start-up's
    allowance before), or a signal while the job re-forms (horovodrun's
    driver ends what it could not place), ends this worker. Which worker says
    the one line is settled over watchdog.py's side channel, whose addresses
    are shared anew in every world (meet): the lowest rank that still
    answers, of the world the wait began in."""

    LINGER = 2 * watchdogs.PING    # s a worker that decided stays up, answering, so that later askers see it

    def __init__(self, layout, timeout, signalled):
        self.layout, self.timeout, self.signalled = layout, timeout, signalled
        self.startup = watchdogs.startup_allowance(timeout)
        self.what, self.since, self.stepping, self.rejoining = 'starting', time.monotonic(), False, False
        self.longest = 0.0
        self.last_commit = 'none yet'
        self.channel = watchdogs.SideChannel(rank=layout.rank, signalled=signalled, backlog=layout.size)
        self.signal_of = self.channel.signal_of
        self._stop = threading.Event()
        # A signal that comes while the main thread waits inside hvd.init (C code)
        # runs no Python handler until that returns: the wakeup fd tells at once.
        self._wake, self._old_wakeup = None, None
        if threading.current_thread() is threading.main_thread():
            r, w = os.pipe()
            os.set_blocking(w, False)
            self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            self._wake, self._wake_w = r, w
        self._thread = threading.Thread(target=self._watch, name='distsoftmax-elastic-watch', daemon=True)
        self._thread.start()

    def meet(self, layout):
        """Share this world's side-channel addresses (a collective: every rank calls it)."""
        layout.mark('the exchange of side-channel addresses')
        self.channel.meet(layout.allgather_text(self.channel.address()), rank=layout.rank)   # distributed

    def at(self, what, step=False):
        now = time.monotonic()
        if self.stepping and not self.rejoining:
            self.longest = max(self.longest, now - self.since)
        self.what, self.since = what, now
        self.stepping = self.stepping or step
        self.rejoining = False

    def rejoin(self):
        self.at('re-forming the job after a change of workers')
        self.rejoining = True

    def stop(self):
        self._stop.set()
        self.channel.close()
        if self._wake is not None and threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)

    def _signal(self):
        """A signal that arrived since the last look, or None."""
        if self._wake is None:
            return self.signalled()
        ready, _, _ = select.select([self._wake], [], [], TICK)
        got = os.read(self._wake, 64) if ready else b''
        return got[0] if got else None

    def _watch(self):
        while not self._stop.is_set():
            signum = self._signal()
            if self._stop.is_set():
                return
            if self.rejoining and signum:
                self._end(128 + signum, 'the job could not be re-formed after a worker left '
                          '(fewer workers than horovodrun --min-np within its --elastic-timeout, or the '
                          f'launcher stopped); last commit: {self.last_commit}')
            limit = self.timeout if (self.stepping or self.rejoining) else self.startup
            waited = time.monotonic() - self.since
            if waited > limit:
                if self.rejoining:
                    self._end(1, f'the job could not be re-formed within {limit:.0f} s (--timeout) after a '
                              f'worker left; last commit: {self.last_commit}')
                self._end(1, f'no progress for {waited:.0f} s (--timeout {limit:.0f}) in {self.what}: '
                          'a worker stopped or the network was cut; stopping')

    def _end(self, code, message):
        """Leave; the line is said by the lowest rank of this world that answers
        (before the addresses were shared: by rank 0)."""
        ch = self.channel
        alive = ch.alive() if ch.peers else set()
        if (not any(r < ch.rank for r in alive)) if ch.peers else ch.rank == 0:
            prefix = f'rank {ch.rank}: ' if ch.rank else ''
            silent = sorted(set(ch.peers) - alive - {ch.rank})
            ranks = f" (rank(s) {', '.join(map(str, silent))} did not answer)" if silent else ''
            try:
                sys.stderr.write(f'distsoftmax: error: {prefix}{message}{ranks}\n')
            except (OSError, ValueError):
                pass
        startup.flush()
        time.sleep(self.LINGER)
        os._exit(code)


class ElasticHorovod(layouts.Horovod):
    """The horovod layout whose membership can change: rejoin() re-forms it."""

    def __init__(self, devices, final, timeout):
        try:
            import horovod.mxnet as hvd
        except Exception as e:
            raise LayoutError(f'horovodrun elastic: Horovod with MXNet is not available ({e}); '
                              'run ./bootstrap.sh setup') from None
        layouts._set_defaults_for(devices, horovod=True)
        # Gloo's timeout bounds every wait of a collective. A survivor whose peers
        # are Gloo-connected to the dead worker only through a live one (3 or more
        # workers) may see no error at all: it waits in its collective until this
        # timeout, then resets as the others did. Not the non-elastic layout's
        # 660 s, so that recovery takes seconds, not minutes.
        os.environ['HOROVOD_GLOO_TIMEOUT_SECONDS'] = os.environ.get('DISTSOFTMAX_ELASTIC_GLOO_TIMEOUT',
                                                                    str(GLOO_TIMEOUT))
        hvd.init()
        self.hvd, self.final = hvd, final
        self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        self.devices = devices
        self.contexts = one_context(devices, self.local_rank)
        self.generation = 0

    def rejoin(self):
        _drain()
        self.hvd.shutdown()
        self.hvd.init()
        self.rank, self.size, self.local_rank = self.hvd.rank(), self.hvd.size(), self.hvd.local_rank()
        self.contexts = one_context(self.devices, self.local_rank)
        self.generation += 1

    def broadcast_object(self, obj):
        """obj from rank 0. On rank 0, Horovod's broadcast_object does not wait
        for its own broadcasts: waitall does, and surfaces a broken ring here."""
        obj = self.hvd.broadcast_object(obj, root_rank=0, name='distsoftmax.object')
        nd.waitall()
        return obj

    def describe(self, every_rank=None):
        return 'horovod (elastic)' + super().describe(every_rank)[len(self.name):]

    def close(self):
        self.mark('leaving the job')
        self.barrier()        # a final collective: rank 0's broadcasts are through
        nd.waitall()
        if self.final:
            self.hvd.shutdown()


class CommitState:
    """What a commit keeps (a dict of plain values and numpy arrays), as
    horovod.common.elastic.State wants it: save, restore, sync, check_host_updates."""

    def __new__(cls, layout):
        from horovod.common.elastic import State

        class _State(State):
            def __init__(self):
                super().__init__(bcast_object=self._bcast, get_rank=lambda: layout.rank)
                self.saved, self.values = None, None

            def _bcast(self, obj):
                with translated():
                    return layout.broadcast_object(obj)

            def commit_values(self, values):
                """Keep values as the commit, then look for host changes (may raise)."""
                self.keep(values)
                self.check_host_updates()

            def keep(self, values):
                self.saved = values
                self.values = copy.deepcopy(values)
                if layout.watchdog is not None:
                    layout.watchdog.last_commit = _where(values)

            def save(self):
                self.keep(self.values)

            def restore(self):
                self.values = copy.deepcopy(self.saved)

            def sync(self):
                self.saved = self._bcast(self.saved if layout.rank == 0 else None)
                self.restore()

        return _State()


def _where(values):
    return f"epoch {values['epoch'] + 1}, step {values['step']}" if values and values.get('started') else 'none yet'


class translated:
    """MXNetError from a broken ring -> HorovodInternalError, which run_fn retries."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is not None and issubclass(kind, mx.base.MXNetError) and _peer_gone(error):
            from horovod.common.exceptions import HorovodInternalError
            raise HorovodInternalError(str(error).strip().splitlines()[0][:300] if str(error).strip()
                                       else 'a peer left') from None
        return False


def _peer_gone(error):
    text = str(error)
    return any(s in text for s in layouts.PEER_GONE) or 'Horovod' in text or 'gloo' in text.lower()


def train(cfg, session, pending):
    """job.train in elastic mode: the same run, made of commits."""
    from horovod.common.elastic import run_fn
    from . import job
    task = Task.of(cfg)
    t_start = time.perf_counter()
    if cfg.layout not in ('auto', 'horovod'):
        raise UsageError(f'--layout {cfg.layout}: horovodrun started an elastic job, which needs the '
                         'horovod layout (--layout auto or horovod)')
    every = commit_steps()
    pending.wait()
    layout = ElasticHorovod(cfg.devices, final=session.cli, timeout=cfg.timeout)   # distributed: join the job
    session.layout = layout
    layout.watchdog = Watch(layout, cfg.timeout, session.signals.first)
    session.callback(layout.watchdog.stop)
    run = _Run(cfg, task, session, pending, layout, every, job, t_start)
    values = run.fresh_values() if layout.rank == 0 else None
    state = CommitState(layout)
    state.keep(values)

    def reset():
        run.release()          # a rank 0 that is left out (cut off, say) must not keep the directory
        layout.watchdog.rejoin()
        layout.rejoin()                                    # distributed: re-form the ring
        layout.mark('the broadcast of the last commit')

    try:
        return run_fn(run.body, reset)(state)
    except Interrupted as e:    # said as job.train says it: what was kept
        history = (state.values or {}).get('history', [])
        raise Interrupted(e.signum, job._kept(str(e), cfg, history)) from None


class _Run:
    """One elastic run: what stays in this process across re-joins."""

    def __init__(self, cfg, task, session, pending, layout, every, job, t_start):
        self.cfg, self.task, self.session, self.pending = cfg, task, session, pending
        self.layout, self.every, self.job, self.t_start = layout, every, job, t_start
        self.lock = None          # the checkpoint lock, while this process is rank 0
        self.device_data, self.data_contexts = None, None
        self.log = report.Log(main=False, quiet=cfg.quiet, timestamps=cfg.timestamps)
        self.commits, self.commit_seconds = 0, 0.0   # mid-epoch commits of this process, and their time

    def fresh_values(self):
        """The values of a run that has not begun: rank 0's initial parameters."""
        net = model.build_net(self.task, self.layout.contexts)
        return {'started': False, 'epoch': 0, 'step': 0, 'sums': [], 'history': [], 'resumed_after': 0,
                'params': {k: p.data().asnumpy() for k, p in net.collect_params().items()},
                'updates': 0, 'states': {}, 'flags': None, 'epoch_t0': time.time(), 'train_t0': None}

    # -- the body: run by run_fn after every sync, on every rank
    def body(self, state):
        with translated():
            return self._body(state)

    def _body(self, state):
        layout, cfg, task = self.layout, self.cfg, self.task
        self.log.main = layout.is_main
        layout.mark('the barrier before the checks of this world')
        layout.barrier()                                                      # distributed
        layout.watchdog.meet(layout)                                          # distributed
        v = state.values
        data, plan, ck = layout.agree(lambda: self._checks(v))               # distributed: one verdict
        if cfg.dry_run:
            self.log.always(f'dry run: {layout.describe()}, {len(plan.step_sizes)} steps an epoch: '
                            'every check passed')
            layout.close()
            return None
        flags = task.math_flags(data.identity)
        if not v['started']:
            v = self._first_values(v, ck, flags, data)
            layout.mark('the broadcast of the first commit')
            v = layout.broadcast_object(v if layout.is_main else None)       # distributed
            state.commit_values(v)                                           # distributed: host changes
            v = state.values
        elif layout.generation and layout.is_main:
            self.log.warn(f'elastic: {layout.size} worker(s) now; continuing from the last commit '
                          f'({_where(v)})')
        if self.device_data is None or self.data_contexts != layout.contexts:
            self.device_data, self.data_contexts = loop.DeviceData(data, layout.contexts), list(layout.contexts)
        net = model.build_net(task, layout.contexts)
        _set_params(net, v['params'])
        trainer = layout.trainer(net.collect_params(), task.bound_optimizer(plan), cfg.fp16_allreduce)
        _set_trainer(trainer, v)
        objective = model.Objective(net)
        objective.hybridize(static_alloc=True, static_shape=True)
        if v['train_t0'] is None:
            v['train_t0'] = time.time()
        while v['epoch'] < cfg.epochs:
            v = self._epoch(state, v, net, trainer, objective, plan, data)
        self.session.signals.check(cfg.epochs - 1)
        return self._finish(v, net, flags)

    def _checks(self, v):
        """Every check this world must pass before a step: the data, the plan for
        this world size, the math of the commit; rank 0 holds the checkpoint lock
        (and, at the start, opens the checkpoint and checks the output paths)."""
        cfg, task, layout = self.cfg, self.task, self.layout
        data = self.pending.get()
        plan = shard.EpochPlan(samples=len(data.train_labels), batch_size=task.batch_size, workers=layout.size,
                               devices=len(layout.contexts), drop_last=task.drop_last)
        flags = task.math_flags(data.identity)
        if v is not None and v['flags'] is not None and v['flags'] != flags:
            raise UsageError(f'this worker has {report_flags(flags)}, the job {report_flags(v["flags"])}: '
                             'every host needs the same flags and data')
        ck = None
        if layout.is_main:
            if v is not None and not v['started']:
                for flag, path in (('--metrics', cfg.metrics), ('--plot', cfg.plot)):
                    if path:
                        files.check_output_file(flag, path)
                if cfg.checkpoint_dir:
                    ck = checkpoint.open_for_training(cfg.checkpoint_dir, resume=cfg.resume,
                                                      overwrite=cfg.overwrite, flags=flags,
                                                      session=self._holding())
            elif cfg.checkpoint_dir and self.lock is None:
                # the last rank 0 frees it when it resets; one cut off frees it after its Gloo timeout
                checkpoint.check_writable(cfg.checkpoint_dir)
                checkpoint.hold(cfg.checkpoint_dir, self._holding(), wait=min(2 * GLOO_TIMEOUT, cfg.timeout / 2))
        return data, plan, ck

    def release(self):
        """Free the checkpoint lock (at every reset): whoever is rank 0 of the next world takes it."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _holding(self):
        """A session-like holder: the lock is kept here (rank 0 may move) and released at the end."""
        run = self

        class Holder:
            def hold(self, lock):
                run.lock = lock
                run.session.callback(lambda: run.lock and run.lock.release())
        return Holder()

    def _first_values(self, v, ck, flags, data):
        """Rank 0's start: fresh, or the checkpoint it opened (--resume)."""
        v = dict(v, started=True, flags=flags)
        if self.layout.is_main:
            if self.cfg.resume and ck is None:
                self.log.warn(f'no checkpoint in {self.cfg.checkpoint_dir}: starting fresh')
            if ck is not None:
                net = model.build_net(self.task, self.layout.contexts)
                checkpoint.load_params(self.cfg.checkpoint_dir, ck, net, self.layout.contexts)
                bound = self.task.optimizer.bind(batch_size=self.task.batch_size, steps_per_epoch=1)
                trainer = mx.gluon.Trainer(net.collect_params(), bound.name, bound.kwargs(), kvstore=None)
                checkpoint.load_trainer(self.cfg.checkpoint_dir, ck, trainer)
                v.update(epoch=int(ck['epoch']), history=list(ck['metrics']), resumed_after=int(ck['epoch']),
                         params={k: p.data().asnumpy() for k, p in net.collect_params().items()},
                         updates=trainer.optimizer.num_update, states=_states_of(trainer))
            self.log.resumed(self.cfg, v['resumed_after'])
        v['epoch_t0'] = time.time()
        return v

    def _epoch(self, state, v, net, trainer, objective, plan, data):
        """The rest of epoch v['epoch'] from global step v['step']; returns the
        values committed at its end."""
        layout, task, signals = self.layout, self.task, self.session.signals
        epoch, start = v['epoch'], v['step']
        total = len(plan.step_sizes)
        sums, kept = list(v['sums']), []
        for step, batch in enumerate(_batches(layout, self.device_data, plan, task.seed, epoch, start), start + 1):
            signals.check(epoch)
            layout.mark(f'epoch {epoch + 1}, step {step} of {total}', step=True)
            with autograd.record():
                out = objective(*batch)
            out[0].backward()
            kept.append(out)
            trainer.step(plan.batch_size)   # the global batch, the tail's too
            if step % self.every == 0 and step < total:
                nd.waitall()                  # the steps before it: their time is not the commit's
                t0 = time.perf_counter()
                sums += self._summed(kept)
                kept = []
                layout.mark(f'the commit at epoch {epoch + 1}, step {step}')
                state.commit_values(self._values(v, net, trainer, step=step, sums=sums))   # distributed
                self.commits += 1
                self.commit_seconds += time.perf_counter() - t0
        sums += self._summed(kept)
        per_step = np.array(sums, dtype=np.float64).reshape(-1, 2)
        bad = np.flatnonzero(~np.isfinite(per_step[:, 0]))
        if len(bad):
            from .errors import Diverged
            raise Diverged(f'diverged at epoch {epoch + 1}, step {bad[0] + 1}: lower --lr')
        test_correct, _ = loop.predict_counts(net, self.device_data, layout, num_classes=task.data.num_classes)
        n = plan.samples_per_epoch
        seconds = time.time() - v['epoch_t0']
        metrics = {'epoch': epoch + 1, 'train_loss': float(per_step[:, 0].sum() / n),
                   'train_acc': float(per_step[:, 1].sum() / n),
                   'test_acc': float(test_correct / self.device_data.n_test), 'samples': n,
                   'seconds': seconds, 'samples_per_s': n / seconds}
        history = list(v['history']) + [metrics]
        done = self._values(v, net, trainer, epoch=epoch + 1, step=0, sums=[], history=history,
                            epoch_t0=time.time())
        state.keep(done)                  # the epoch is committed before rank 0 writes it
        if layout.is_main:
            layout.mark(f"writing epoch {epoch + 1}'s checkpoint and metrics")
            self.job._save(self.cfg, task, net, trainer, history, self.pending.get())
        self.log.epoch(metrics)
        layout.mark(f'the commit at the end of epoch {epoch + 1}')
        state.check_host_updates()                                           # distributed
        return state.values

    def _summed(self, kept):
        """The per-step (loss sum, correct) of these steps, summed over the workers."""
        if not kept:
            return []
        local = nd.stack(*[nd.stack(*out) for out in kept]).as_in_context(mx.cpu()).asnumpy().astype(np.float64)
        self.layout.mark('the allreduce of the steps since the last commit')
        return [list(row) for row in self.layout.allreduce(local)]

    def _values(self, v, net, trainer, **changes):
        out = dict(v, params={k: p.data().asnumpy() for k, p in net.collect_params().items()},
                   updates=trainer.optimizer.num_update, states=_states_of(trainer))
        out.update(changes)
        return out

    def _finish(self, v, net, flags):
        layout, cfg = self.layout, self.cfg
        history = v['history']
        seconds = time.time() - v['train_t0']
        in_sync = layout.replicas_identical(net.collect_params())               # distributed
        summary = report.summary(history, v['resumed_after'], seconds, time.perf_counter() - self.t_start,
                                 layout, in_sync, task=self.task, cfg=cfg, every_rank=None)
        summary.update(elastic_commit_steps=self.every, elastic_commits=self.commits,
                       elastic_commit_seconds=self.commit_seconds)
        if layout.is_main:
            self.job._finish(cfg, self.task, history, summary, self.log, None)
        if not in_sync:
            from .errors import LayoutError
            raise LayoutError('the replicas hold different parameters after training')
        layout.close()                                                          # distributed: leave
        return result.Trained(history=history, summary=summary, checkpoint_dir=cfg.checkpoint_dir, net=net,
                              task=self.task, rank=layout.rank)


def report_flags(flags):
    from .data import describe
    return ', '.join(f'{k} {describe(v) if k == "data" else v}' for k, v in flags.items())


def _batches(layout, data, plan, seed, epoch, start):
    """This worker's (images, labels) of global steps start, start+1, ... of the
    epoch, for the plan of this world size (one context)."""
    full, tail = plan.worker_indices(seed, epoch, layout.rank)
    x, y = data.train_x[0], data.train_y[0]
    if start < len(full):
        rows = full[start:]
        gather = loop._Gather(x, y, rows.shape[1])
        idx = nd.array(rows, dtype='int32', ctx=x.context)
        for s0 in range(0, len(rows), loop.GATHER_STEPS):
            yield from gather.block(idx[s0:s0 + loop.GATHER_STEPS])
    if len(tail) and start <= len(full):
        i = nd.array(tail, dtype='int32', ctx=x.context)
        yield nd.take(x, i), nd.take(y, i)


def _set_params(net, params):
    for name, p in net.collect_params().items():
        p.set_data(nd.array(params[name], dtype=params[name].dtype))


def _states_of(trainer):
    return {int(i): st.asnumpy() for updater in checkpoint._updaters(trainer)[:1]
            for i, st in updater.states.items() if isinstance(st, mx.nd.NDArray)}


def _set_trainer(trainer, v):
    opt = trainer.optimizer
    opt.begin_num_update = opt.num_update = int(v['updates'])
    if v['states']:
        for updater in checkpoint._updaters(trainer):
            for i, st in v['states'].items():
                updater.states[int(i)] = nd.array(st, ctx=trainer._contexts[0])
                updater.states_synced[int(i)] = False
