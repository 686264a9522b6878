"""Two phases of every round beside the configurations: the per-step profile, and
how cost grows with work.

Profile (bench/profile_step.py, through the public CLI, local layout, the run's
data and epochs): per training step the wall, the process CPU, the Python
thread's CPU (the dispatch) and the rest (the engine's threads), at batch 256 and
at 128 (what half a batch saves), with NaiveEngine, and once under MXNet's
profiler for the top operations; the C floor's own phases (PHASES=1) for the same
work; and `import mxnet` alone. From them: the 2-worker ceiling on this machine's
cores, each figure derived in figures() below.

Growth: distsoftmax local on the run's training set tiled to N samples for each N
(samples/s, peak RSS, CPU; the test set stays as it is), and where the pip
mxnet's 2^31-element limit stops one context. Tiled, not --synthetic N: the
synthetic generator draws float32 noise for the whole set at once, so at 960k
samples its own temporaries (about 12 GB, 100 s here) would be what is measured.
"""
import gzip
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import configs as C
from bench import measure
from bench.native import D

PROFILE_STEP = measure.ROOT / 'bench' / 'profile_step.py'
# the profiled run times each operator alone: MXNet's default bulks a graph's
# operators into segments that the profiler reports as one ('FullyConnected,_mul_scalar,...')
NO_BULK = {'MXNET_EXEC_BULK_EXEC_TRAIN': '0', 'MXNET_EXEC_BULK_EXEC_INFERENCE': '0'}
# name, batch size, MXNet profiler on, extra environment
PROFILE_RUNS = (('b256', 256, False, {}), ('b128', 128, False, {}),
                ('naive', 256, False, C.NAIVE_ENV), ('ops', 256, True, NO_BULK))
NOT_OPERATORS = ('WaitForVar', 'WaitForAll')   # the host's waits, in the operator domain
GROWTH = (60000, 240000, 960000)
# the pip mxnet is built without large-tensor support (INT64_TENSOR_SIZE): an NDArray
# holds at most 2^31 - 1 elements; one context's uint8 training images are one NDArray
MAX_ELEMENTS = 2 ** 31 - 1
TOP = 8


def profile_once(name, batch, profiler, env, data, epochs, timeout, package):
    with tempfile.TemporaryDirectory(prefix='bench-prof-') as tmp:
        out = Path(tmp) / 'profile.json'
        argv = [measure.PY, str(PROFILE_STEP), str(out), *(['--profiler'] if profiler else []),
                *(['--skip-first'] if epochs > 1 else []), '--',
                '--epochs', str(epochs), '--quiet', '--data-dir', data['dir'],
                *data['flags'], '--batch-size', str(batch)]
        load = os.getloadavg()[0]
        rc, stdout, err, wall = measure.execute(argv, package, {**measure.worker_env(package), **env},
                                                timeout)
        run = {'profile': name, 'batch': batch, 'profiler': profiler, 'env': env, 'rc': rc,
               'wall_s': wall, 'load1_before': load}
        if rc != 0 or not out.exists():
            run['error'] = f'rc {rc}; stderr tail:\n' + (err or stdout)[-2000:]
        else:
            run['record'] = json.loads(out.read_text())
    return run


PHASES = re.compile(r'gather\+convert ([\d.]+), forward ([\d.]+), softmax\+loss ([\d.]+), '
                    r'backward\+update ([\d.]+) \((\d+) steps\)')


def c_floor_phases(native, data, epochs, timeout):
    """The C floor's per-step CPU microseconds by phase (its PHASES=1 report)."""
    if not native or 'error' in native:
        return {'error': (native or {}).get('error', 'not built')}
    rc, out, err, wall = measure.execute([native['binary'], native['mode'], str(epochs), data['dir']],
                                         None, {**os.environ, 'PHASES': '1'}, timeout)
    m = PHASES.search(err)
    if rc != 0 or not m:
        return {'error': f'rc {rc}: {err[-500:]}'}
    gather, fwd, soft, bwd, steps = map(float, m.groups())
    return {'gather_us': gather, 'forward_us': fwd, 'softmax_us': soft, 'backward_us': bwd,
            'steps': int(steps), 'mode': native['mode']}


def import_seconds(package, timeout):
    t0 = time.perf_counter()
    subprocess.run([measure.PY, '-c', 'import mxnet'], env=measure.worker_env(package),
                   capture_output=True, timeout=timeout)
    return time.perf_counter() - t0


def profile_round(data, epochs, timeout, package, native):
    """Every profile run once, the C floor's phases, the import: one round's profile."""
    runs = [profile_once(*spec, data, epochs, timeout, package) for spec in PROFILE_RUNS]
    return {'runs': runs, 'c_floor': c_floor_phases(native, data, epochs, timeout),
            'import_mxnet_s': import_seconds(package, timeout), 'load1_before': runs[0]['load1_before']}


IMAGES_MAGIC, LABELS_MAGIC = 0x803, 0x801   # IDX: uint8, 3 and 1 dimensions


def _read_idx(path, header):
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    return raw[:header], raw[header:]


def tiled_data(source_dir, sizes, where):
    """{N: a directory of IDX files whose training set is SOURCE_DIR's repeated to N
    samples (the test files are linked as they are)}, written once per bench run
    (gzip level 1: fast to write, as fast to read)."""
    images_name, labels_name = measure.harness.IDX_NAMES['train']
    _, pixels = _read_idx(Path(source_dir) / images_name, 16)
    _, labels = _read_idx(Path(source_dir) / labels_name, 8)
    n_source, item = len(labels), D
    out = {}
    for n in sizes:
        if n == n_source:
            out[n] = str(source_dir)
            continue
        d = Path(where) / f'tiled-{n}'
        d.mkdir(parents=True, exist_ok=True)
        reps = -(-n // n_source)
        with gzip.open(d / images_name, 'wb', compresslevel=1) as f:
            f.write(IMAGES_MAGIC.to_bytes(4, 'big') + n.to_bytes(4, 'big')
                    + (28).to_bytes(4, 'big') * 2)
            left = n
            for _ in range(reps):
                take = min(left, n_source)
                f.write(pixels[:take * item])
                left -= take
        with gzip.open(d / labels_name, 'wb', compresslevel=1) as f:
            f.write(LABELS_MAGIC.to_bytes(4, 'big') + n.to_bytes(4, 'big')
                    + (labels * reps)[:n])
        for name in measure.harness.IDX_NAMES['t10k']:
            target = d / name
            if not target.exists():
                os.symlink(Path(source_dir).resolve() / name, target)
        out[n] = str(d)
    return out


def growth_once(n, data_dir, epochs, timeout, package):
    with tempfile.TemporaryDirectory(prefix='bench-grow-') as tmp:
        metrics, rss = Path(tmp) / 'metrics.jsonl', Path(tmp) / 'rss.txt'
        argv = [measure.GNU_TIME, '-o', str(rss), '-f', '%M', measure.PY, '-m', 'distsoftmax',
                '--epochs', str(epochs), '--quiet', '--metrics', str(metrics),
                '--data-dir', data_dir, '--no-verify']
        load, cpu0 = os.getloadavg()[0], measure.cpu_seconds()
        rc, out, err, wall = measure.execute(argv, package, measure.worker_env(package), timeout)
        run = {'n_train': n, 'epochs': epochs, 'rc': rc, 'wall_s': wall, 'load1_before': load,
               **measure.noise(cpu0, measure.cpu_seconds()), 'rss_mb': measure.peak_rss_mb(rss)}
        summary = measure.distsoftmax_summary(metrics)
    if rc != 0 or summary is None or not run['rss_mb']:
        run['error'] = f'rc {rc}; stderr tail:\n' + (err or out)[-2000:]
    else:
        run.update(samples_per_s=summary['samples_per_s'], test_acc=summary['test_acc'],
                   samples_per_cpu_s=epochs * n / run['cpu_s'])
    return run


def growth_round(dirs, epochs, timeout, package):
    """DIRS: tiled_data()'s {N: directory}."""
    return [growth_once(n, d, epochs, timeout, package) for n, d in sorted(dirs.items())]


def context_limit():
    """The most training samples one context holds: its uint8 images are one NDArray
    of n x 784 elements."""
    return {'max_elements': MAX_ELEMENTS, 'elements_per_sample': D,
            'max_samples_per_context': MAX_ELEMENTS // D,
            'times_fashion_mnist': MAX_ELEMENTS // D / 60000}


# --- from runs to figures ----------------------------------------------------------------

def per_step(record):
    """Per-step figures of one profile_step record (microseconds), over its epochs
    after the first (which builds the cached graph) when there are two or more."""
    epochs = record['epochs'][1:] if len(record['epochs']) > 1 else record['epochs']
    steps = sum(e['steps'] for e in epochs)
    if not steps:
        return None

    def total(key, sub=None):
        return sum((e[key][sub] if sub else e[key]) for e in epochs) * 1e6 / steps
    wall, cpu, main = total('wall_s'), total('cpu_s'), total('main_cpu_s')
    out = {'steps': steps, 'wall_us': wall, 'cpu_us': cpu, 'dispatch_us': main,
           'engine_us': cpu - main, 'cores_busy': cpu / wall if wall else None}
    calls = 0.0
    for part in ('forward', 'backward', 'trainer_step'):
        out[f'{part}_us'] = total(part, 'cpu_s')
        calls += out[f'{part}_us']
    out['loop_other_us'] = main - calls
    return out


def top_operators(record, n=TOP):
    """[(name, calls a step, us a step)], largest first, and the totals, over the
    profiled epochs' steps."""
    ops = record.get('operators') or {}
    steps = sum(e['steps'] for e in record['epochs'] if e.get('profiled'))
    if not steps:
        return [], 0, 0, []
    rows = sorted(((name, v['Count'] / steps, v['Total'] * 1e3 / steps) for name, v in ops.items()
                   if name not in NOT_OPERATORS), key=lambda r: -r[2])
    return rows[:n], sum(r[1] for r in rows), sum(r[2] for r in rows), rows


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def figures(profile_rounds, cores=C.CORES):
    """Medians over the rounds of every per-step figure, and what follows from them.
    The names are what bench/WHY.md quotes as {name}."""
    by_kind = {}
    for rnd in profile_rounds:
        for run in rnd['runs']:
            if 'error' not in run:
                ps = per_step(run['record'])
                if ps:
                    by_kind.setdefault(run['profile'], []).append((ps, run['record']))
    f = {}
    for kind, rows in by_kind.items():
        for key in rows[0][0]:
            f[f'{kind}_{key}'] = _median([r[0][key] for r in rows])
    b256, b128, naive = (by_kind.get(k) for k in ('b256', 'b128', 'naive'))
    if b256 and b128:
        w256, c256 = f['b256_wall_us'], f['b256_cpu_us']
        w128, c128 = f['b128_wall_us'], f['b128_cpu_us']
        f['half_batch_saves'] = 1 - c128 / c256
        f['batch_part_us'] = 2 * (c256 - c128)   # linear in the batch: what 256 samples cost
        # two ranks of half a batch on CORES cores: the global step takes at least
        # the CPU both ask for spread over the cores, and at least one rank's own step
        f['ceiling_2w'] = w256 / max(2 * c128 / cores, w128)
        f['ceiling_2w_one_core_each'] = w256 / w128
    if b256 and naive:
        f['naive_speed'] = f['b256_wall_us'] / f['naive_wall_us']
    ops_rows = by_kind.get('ops')
    if ops_rows:
        tops, names = [], {}
        for ps, record in ops_rows:
            top, calls, us, rows = top_operators(record)
            tops.append((calls, us))
            for name, c, u in rows:
                names.setdefault(name, []).append((c, u))
        f['ops_per_step'] = _median([t[0] for t in tops])
        f['op_us_per_step'] = _median([t[1] for t in tops])
        f['ops_profiler_slowdown'] = f['ops_wall_us'] / f['b256_wall_us'] if b256 else None
        table = sorted(((n, _median([c for c, _ in v]), _median([u for _, u in v]))
                        for n, v in names.items()), key=lambda r: -r[2])
        f['top_operators'] = table[:TOP]
        fc = sum(u for n, _, u in table if 'FullyConnected' in n)
        cast = sum(u for n, _, u in table if n.lower() in ('cast', 'amp_cast', '_backward_cast'))
        f['fc_us'], f['cast_us'] = fc, cast
        f['fc_cast_share'] = (fc + cast) / f['op_us_per_step'] if f['op_us_per_step'] else None
        f['top_operators_text'] = ', '.join(f'{n} {u:.0f} us' for n, _, u in table[:5])
    cf = [r['c_floor'] for r in profile_rounds if 'error' not in r.get('c_floor', {'error': 1})]
    if cf:
        for key in ('gather_us', 'forward_us', 'softmax_us', 'backward_us'):
            f[f'c_{key}'] = _median([c[key] for c in cf])
        f['c_step_us'] = sum(f[f'c_{k}'] for k in ('gather_us', 'forward_us', 'softmax_us',
                                                     'backward_us'))
        f['c_mode'] = cf[0]['mode']
        if f.get('fc_us'):
            f['fc_vs_c'] = f['fc_us'] / (f['c_forward_us'] + f['c_backward_us'])
    f['import_mxnet_s'] = _median([r.get('import_mxnet_s') for r in profile_rounds])
    f['libmxnet_rss_mb'] = _median([rec.get('libmxnet_rss_mb') for _, rec in (b256 or [])])
    libs = [b for _, rec in (b256 or [])[:1] for b in rec.get('blas') or []]
    mx_blas = [b for b in libs if 'mxnet' in (b.get('path') or '')]
    f['kernel_mxnet'] = ', '.join(f"{b['architecture']} (OpenBLAS {b['version']}, {b['threads']} "
                                  f"thread(s))" for b in mx_blas) or None
    return f
