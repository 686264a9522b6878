"""One distsoftmax run through its public CLI, with timers around the parts of a step.

usage: python bench/profile_step.py OUT_JSON [--profiler] [--skip-first] -- DISTSOFTMAX_FLAGS...

Runs `python -m distsoftmax FLAGS` in this process (runpy, as -m does) and
records, per training epoch:
  - wall, process CPU and the main thread's CPU (time.thread_time) of the epoch's
    training part, evaluation left out; the main thread is where Python runs and
    pushes each operation to MXNet's engine (the dispatch); what the process used
    beyond it ran on the engine's threads (the arithmetic and the engine itself);
  - the main thread's CPU and the wall spent inside the objective's forward call,
    NDArray.backward and Trainer.step, each counted per call;
  - with --profiler, MXNet's profiler (aggregate stats) over the training parts
    only (with --skip-first, from the second epoch on: the first builds the
    cached graph): every operator's count and total time.

The only hook into distsoftmax's internals is HOOK below (the function that trains
one epoch, called once per epoch with the objective among its arguments,
positional or keyword); everything else is public (Gluon, NDArray, the CLI). If the hook
is gone, the whole run is timed instead and OUT_JSON says so.
"""
import atexit
import json
import os
import re
import runpy
import sys
import time

HOOK = ('distsoftmax.loop', 'train_epoch')


class Part:
    """Calls, main-thread CPU and wall spent inside one wrapped callable."""

    def __init__(self):
        self.calls, self.cpu, self.wall = 0, 0.0, 0.0
        self.active = False

    def wrap(self, fn):
        def timed(*a, **kw):
            if not self.active:
                return fn(*a, **kw)
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.cpu += time.thread_time() - c0
                self.wall += time.perf_counter() - w0
                self.calls += 1
        return timed

    def as_dict(self):
        return {'calls': self.calls, 'cpu_s': self.cpu, 'wall_s': self.wall}


def blas_libraries():
    """Every BLAS this process loaded (mxnet ships its own libopenblas beside numpy's),
    read as bench/blas_probe.py reads the numpy floor's."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        '_bench_blas_probe', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'blas_probe.py'))
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    try:
        return probe.via_threadpoolctl()
    except ImportError:
        return probe.via_ctypes()


def mapped_rss_mb(name='libmxnet'):
    """RSS of this process's mappings of NAME (the library's code and data pages)."""
    total, inside = 0, False
    try:
        with open('/proc/self/smaps') as f:
            for line in f:
                if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
                    inside = name in line
                elif inside and line.startswith('Rss:'):
                    total += int(line.split()[1])
    except OSError:
        return None
    return total * 1024 / 1e6


def main():
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]   # bench/'s modules must not shadow anything distsoftmax imports
    sys.path.insert(0, os.getcwd())   # as `python -m` has it: the cwd first
    argv = sys.argv[1:]
    out_path, argv = argv[0], argv[1:]
    use_profiler = '--profiler' in argv[:argv.index('--')]
    skip_first = '--skip-first' in argv[:argv.index('--')]
    flags = argv[argv.index('--') + 1:]
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import importlib

    import mxnet as mx
    from mxnet import gluon, nd

    record = {'flags': flags, 'engine': os.environ.get('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice'),
              'profiler': use_profiler, 'epochs': [], 'hook': '.'.join(HOOK)}
    parts = {'forward': Part(), 'backward': Part(), 'trainer_step': Part()}
    steps, started = [0], [False]

    gluon.Trainer.step = parts['trainer_step'].wrap(gluon.Trainer.step)
    nd.NDArray.backward = parts['backward'].wrap(nd.NDArray.backward)
    if use_profiler:
        mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                               filename=out_path + '.trace.json')

    def count_steps(fn):
        def counted(*a, **kw):
            if parts['forward'].active:
                steps[0] += 1
            return fn(*a, **kw)
        return counted
    gluon.Trainer.step = count_steps(gluon.Trainer.step)

    try:
        module = importlib.import_module(HOOK[0])
        real = getattr(module, HOOK[1])
    except (ImportError, AttributeError):
        module = real = None
        record['hook'] = None

    def epoch(*a, **kw):
        for x in (*a, *kw.values()):   # the objective: the HybridBlock a step calls
            if isinstance(x, gluon.HybridBlock) and not getattr(x, '_bench_wrapped', False):
                x.forward = parts['forward'].wrap(x.forward)
                x._bench_wrapped = True
        nd.waitall()
        profiled = use_profiler and len(record['epochs']) >= (1 if skip_first else 0)
        if profiled:
            mx.profiler.set_state('run') if not started[0] else mx.profiler.resume()
            started[0] = True
        s0, w0, c0, m0 = steps[0], time.perf_counter(), time.process_time(), time.thread_time()
        before = {k: p.as_dict() for k, p in parts.items()}
        for p in parts.values():
            p.active = True
        try:
            return real(*a, **kw)
        finally:
            nd.waitall()
            for p in parts.values():
                p.active = False
            row = {'wall_s': time.perf_counter() - w0, 'cpu_s': time.process_time() - c0,
                   'main_cpu_s': time.thread_time() - m0, 'steps': steps[0] - s0}
            for k, p in parts.items():
                row[k] = {f: v - before[k][f] for f, v in p.as_dict().items()}
            row['profiled'] = profiled
            record['epochs'].append(row)
            if profiled:
                mx.profiler.pause()

    if real is not None:
        setattr(module, HOOK[1], epoch)

    t0, c0 = time.perf_counter(), time.process_time()

    def write():
        record['whole'] = {'wall_s': time.perf_counter() - t0, 'cpu_s': time.process_time() - c0}
        record['libmxnet_rss_mb'] = mapped_rss_mb()
        record['blas'] = blas_libraries()
        if started[0]:
            stats = json.loads(mx.profiler.dumps(format='json'))
            record['operators'] = stats.get('Time', {}).get('operator', {})
            record['c_api'] = stats.get('Time', {}).get('MXNET_C_API', {})
        with open(out_path, 'w') as f:
            json.dump(record, f, indent=1)

    atexit.register(write)   # distsoftmax's quick exit runs the exit handlers too
    sys.argv = ['distsoftmax', *flags]
    runpy.run_module('distsoftmax', run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
