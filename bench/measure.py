"""Measuring one run of one configuration.

Per run: samples/s as the process itself times it over all epochs (evaluation
included: distsoftmax's --metrics summary, the anchors' JSON line); the wall time
of the whole process around the subprocess (interpreter start, imports, data
load and verification, launcher); the CPU time of the whole process tree (every
rank and the launcher, from getrusage(RUSAGE_CHILDREN) before and after: each
rank is reaped into it), and so samples per CPU-second; each rank's peak RSS
(GNU time's %M wrapped around every rank, so the launcher is not counted); the
final test accuracy; the CPU time other processes took meanwhile; for the numpy
floor the BLAS kernel that ran (bench/blas_probe.py), for the C floor and the
numpy floor the CPU time of their training part alone.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import configs as C

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))
import harness  # noqa: E402  (tests/harness.py: launcher argv, IDX writer)

ANCHORS = ROOT.parent / 'shared' / 'anchors'
REAL_DATA = '/usr/share/datasets/fashion-mnist'
PY = sys.executable
GNU_TIME = '/usr/bin/time'


BLAS_PROBE = ROOT / 'bench' / 'blas_probe.py'


def worker_env(package):
    """One OpenMP thread per process for every configuration, the anchors and the
    peer too, and the package snapshot first on the path."""
    env = harness.launch_env(PYTHONPATH=str(package))
    env.pop('MXNET_CPU_WORKER_NTHREADS', None)  # only what a config sets
    env.pop('MXNET_ENGINE_TYPE', None)
    return env


def config_env(cfg, package):
    env = {**worker_env(package), **cfg.env}
    for name in cfg.unset:
        env.pop(name, None)
    return env


def command(cfg, data, epochs, scratch, torch_python=None, native=None):
    """argv for one run, and the files it leaves: the metrics (the BLAS probe's
    record for the numpy floor), one RSS line per rank."""
    metrics, rss = scratch / 'metrics.jsonl', scratch / 'rss.txt'
    # -a: every rank appends its own line; %M is that rank's peak RSS in KiB
    timed = [GNU_TIME, '-a', '-o', str(rss), '-f', '%M']
    if cfg.kind == C.NATIVE:
        return timed + [native['binary'], native['mode'], str(epochs), data['dir']], metrics, rss
    if cfg.kind in (C.ANCHOR, C.TORCH):
        python = PY if cfg.kind == C.ANCHOR else torch_python
        script, *rest = cfg.args
        args = [str(ANCHORS / script), data['dir'], str(epochs), *rest]
        if cfg.blas_probe:
            args = [str(BLAS_PROBE), str(metrics), *args]
        if cfg.launcher == 'torchrun':
            return harness.torchrun_argv(cfg.workers, python, args, prefix=timed), metrics, rss
        return timed + [python, *args], metrics, rss
    args = ['-m', 'distsoftmax', '--epochs', str(epochs), '--quiet', '--metrics', str(metrics),
            '--data-dir', data['dir'], *data['flags'], *cfg.args]
    if cfg.launcher == 'horovodrun':
        argv = harness.horovodrun_argv(cfg.workers, PY, args, cfg.transport, prefix=timed)
    elif cfg.launcher == 'mpirun':
        argv = harness.mpirun_argv(cfg.workers, PY, args, prefix=timed,
                                   env_names=harness.MPI_ENV_NAMES + ('PYTHONPATH', *cfg.env))
    else:
        argv = timed + [PY, *args]
    return argv, metrics, rss


def peak_rss_mb(path):
    """Per-rank peak RSS in MB (10^6 bytes, as the target says; GNU time's %M is in
    KiB); GNU time may add 'Command exited ...' lines, skip them."""
    text = path.read_text() if path.exists() else ''
    return [int(line) * 1024 / 1e6 for line in text.split() if line.isdigit()]


def cpu_seconds():
    """(busy CPU seconds of the whole machine, of our finished children, stolen by the host)."""
    with open('/proc/stat') as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    tick = os.sysconf('SC_CLK_TCK')
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((user + nice + system + irq + softirq) / tick, own.ru_utime + own.ru_stime, steal / tick)


def noise(before, after):
    """CPU seconds that this run's process tree used (all ranks are reaped into it),
    and that other processes took during the run: the machine's busy time less
    the run's own."""
    busy, own, steal = (b - a for a, b in zip(before, after))
    return {'cpu_s': own, 'other_cpu_s': max(0.0, busy - own), 'steal_s': steal}


def execute(argv, cwd, env, timeout):
    """(rc, stdout, stderr, wall seconds) of one subprocess; rc 'timeout' if killed."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 'timeout', str(e.stdout or ''), str(e.stderr or '')
    return rc, out, err, time.perf_counter() - t0


def run_once(cfg, data, epochs, timeout, package, torch_python=None, native=None):
    """One run of CFG: a dict of what was measured, with 'error' if it failed.
    NATIVE: bench/native.py's build of the C floor (for the NATIVE kind)."""
    result = {'config': cfg.name}
    if cfg.kind == C.NATIVE and (not native or 'error' in native):
        result.update(argv=[], rc=None, error=(native or {}).get('error', 'the C floor was not built'),
                      load1_before=os.getloadavg()[0], wall_s=0.0, rss_mb=[])
        return result
    with tempfile.TemporaryDirectory(prefix='bench-') as tmp:
        argv, metrics, rss = command(cfg, data, epochs, Path(tmp), torch_python, native)
        load, cpu0 = os.getloadavg()[0], cpu_seconds()
        # cwd: python -m puts it first on sys.path, ahead of the editable install
        cwd = package if cfg.kind == C.DISTSOFTMAX else ANCHORS
        rc, out, err, wall = execute(argv, cwd, config_env(cfg, package), timeout)
        result.update({'argv': argv, 'rc': rc, 'wall_s': wall, 'load1_before': load,
                       **noise(cpu0, cpu_seconds()), 'rss_mb': peak_rss_mb(rss)})
        summary = (distsoftmax_summary(metrics) if cfg.kind == C.DISTSOFTMAX
                   else anchor_summary(out))
        probe = json.loads(metrics.read_text()) if cfg.blas_probe and metrics.exists() else None
    if rc != 0 or summary is None or len(result['rss_mb']) != cfg.workers:
        result['error'] = (f'rc {rc}, {len(result["rss_mb"])} RSS line(s) for {cfg.workers} '
                           f'worker(s); stderr tail:\n' + (err or out)[-2000:])
        return result
    samples = epochs * data['n_train']   # the anchors assume 60000; count the ones really used
    result.update(raw=summary, seconds=summary['seconds'], test_acc=summary['test_acc'],
                  samples_per_s=(summary['samples_per_s'] if cfg.kind == C.DISTSOFTMAX
                                 else samples / summary['seconds']),
                  samples_per_cpu_s=samples / result['cpu_s'] if result['cpu_s'] > 0 else None,
                  cores_busy=result['cpu_s'] / wall)
    # the training part's own CPU time: the C floor reports it, the probe measures the
    # numpy floor's (both one thread, evaluation included as in their samples/s)
    train_cpu = summary.get('cpu_s') if cfg.kind == C.NATIVE else (probe or {}).get('train_cpu_s')
    if train_cpu:
        result.update(train_cpu_s=train_cpu, samples_per_train_cpu_s=samples / train_cpu)
    if probe:
        result['blas'] = {k: v for k, v in probe.items() if k != 'train_cpu_s'}
    return result


def anchor_summary(stdout):
    """The last JSON line an anchor printed (rank 0's, under torchrun)."""
    lines = [line for line in stdout.splitlines() if line.startswith('{')]
    return json.loads(lines[-1]) if lines else None


def distsoftmax_summary(metrics):
    """The summary object that --metrics writes last (rank 0 only)."""
    if not metrics.exists():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return rows[-1] if rows and rows[-1].get('summary') else None


# --- before the first round ------------------------------------------------------------

def snapshot_package(where):
    """Copy distsoftmax/ once and run every configuration from the copy: the package
    may be edited while the bench runs, and the rounds must all measure one version."""
    shutil.copytree(ROOT / 'distsoftmax', where / 'distsoftmax',
                    ignore=shutil.ignore_patterns('__pycache__'))
    return where


def prepare_data(data_dir, synthetic, where, package):
    """Real data, or SYNTHETIC samples written as IDX files so that the anchors,
    which only read a directory, train on the same samples as distsoftmax."""
    if not synthetic:
        return {'dir': str(data_dir), 'flags': [], 'n_train': 60000, 'n_test': 10000,
                'source': str(data_dir)}
    sys.path.insert(0, str(package))  # the snapshot's data module, not the tree's
    from distsoftmax import data
    drawn = data.synthetic(seed=0, n_train=synthetic)
    harness.write_idx_dir(where, drawn)
    # --no-verify: the SHA-256 sums are those of the real files
    return {'dir': str(where), 'flags': ['--no-verify'], 'n_train': synthetic,
            'n_test': len(drawn.test_labels), 'source': f'synthetic, {synthetic} training samples'}


def warm_up(data, package, torch_python=None):
    """Load the shared libraries and the data files into the page cache once, so that
    the first configuration of round 1 does not pay for a cold disk alone."""
    subprocess.run([PY, '-c', 'import mxnet, numpy, mpi4py.MPI, horovod.mxnet'],
                   capture_output=True, env=worker_env(package))
    if torch_python:
        subprocess.run([torch_python, '-c', 'import torch, numpy'], capture_output=True)
    for f in Path(data['dir']).glob('*.gz'):
        f.read_bytes()
