"""python bench/run.py: distsoftmax's speed, measured side by side with its references.

One invocation runs every configuration --repeats times, in alternation
(A B C ... A B C ...), so that a slow minute on a noisy machine hits every
configuration alike instead of one. It writes, into --out (default bench/):

  RESULTS.md    the table of medians, the targets as ratios measured in the same
                run, and the machine it ran on
  results.json  every run's raw numbers, for auditing
  scaling.png   throughput against worker count, and whole-process wall time

Per run it measures: samples/s as the process itself times it over all
epochs (evaluation included), the wall time of the whole process around the
subprocess (interpreter start, imports, data load and verification, launcher),
the peak RSS of each worker (GNU time wrapped around each rank, so the
launcher is not counted), and the final test accuracy.
"""
import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT.parent / 'shared' / 'anchors'
REAL_DATA = '/usr/share/datasets/fashion-mnist'
PY = sys.executable
BIN = Path(PY).parent                      # the venv's bin: horovodrun lives there
GNU_TIME = '/usr/bin/time'
CORES = len(os.sched_getaffinity(0))       # what this process may use, not what the host has

# Why a target that misses does, by the start of its text: what profiling and
# side-by-side runs showed (fb09a99..); README.md's Speed section has the numbers.
WHY = {
    'local >= 1.0x numpy floor': """\
- numpy floor: a step is bound by dispatch, not arithmetic. Its math (the two
  small GEMMs numpy also does) takes about 0.5 ms of a 1.5 ms step; the rest is
  the Python thread handing MXNet the cached graph, the autograd backward and
  the Trainer's update (cProfile: Trainer.step 30%, backward 23%, the cached
  graph 17% of the loop). Closing that gap means leaving Gluon's autograd and
  Trainer, which every layout is built on.""",
    'horovodrun -np 2 >= 1.4x': """\
- strong scaling: one process already keeps 1.6 of the 2 cores busy (its Python
  thread dispatching, MXNet's engine thread computing; CPU time over wall time
  for 20 extra epochs), so two ranks on 2 cores cannot exceed about 1.25x even
  with a free allreduce; half a batch per rank halves the arithmetic, not the
  dispatch, and adds an allreduce and a wait per step.""",
    'local whole process': """\
- whole process: `import mxnet` alone is 1.5-2.5 s here (it generates Python
  wrappers for every operator), 5 epochs about 1.9 s; the data read (0.9 s)
  runs beside the import. The total sits near 5 s, and this machine's speed
  moves it across: see the rounds.""",
    'peak RSS': """\
- peak RSS: `--devices cpu:2` holds the uint8 data (55 MB) once per context, as
  each GPU of `gpu:0,1` must; a process with one context needs that much less.
  Of any worker's peak, 120-150 MB is libmxnet's code mapped from the page
  cache (shared by every rank on a host), and how much of it the kernel maps
  varies from run to run.""",
}


def why(target_rows):
    """The WHY paragraphs of the targets this run missed."""
    missed = [text for text, value, _, met in target_rows if value is not None and not met]
    if not missed:
        return 'Every measured target is met.'
    return '\n'.join(next((w for k, w in WHY.items() if t.startswith(k)),
                          f'- {t}: not analysed; see README.md, Speed') for t in missed)


TARGETS_NOTE = 'each ratio is taken per round (runs next to each other), then the median of the rounds'


@dataclass
class Config:
    name: str                  # what --only takes
    label: str                 # what the table shows
    kind: str                  # 'distsoftmax' or 'anchor'
    workers: int = 1
    launcher: str = 'local'    # local, horovodrun or mpirun
    args: list = field(default_factory=list)
    note: str = ''
    env: dict = field(default_factory=dict)


def all_configs():
    """Every configuration, in the order of a round."""
    ds = 'distsoftmax'
    return [
        Config('textbook', 'textbook pipeline (seed_gluonbook.py, 4 loader workers)', 'anchor',
               args=['seed_gluonbook.py', '4']),
        Config('numpy-floor', 'numpy floor (numpy_floor.py)', 'anchor', args=['numpy_floor.py']),
        Config('local', 'distsoftmax, local CPU', ds),
        # distsoftmax defaults to one OpenMP thread per process: does every core help?
        Config('local-all-cores', f'distsoftmax, local CPU, OMP_NUM_THREADS={CORES}',
               ds, env={'OMP_NUM_THREADS': str(CORES)}),
        Config('devices-cpu2', 'distsoftmax --devices cpu:2', ds, args=['--devices', 'cpu:2']),
        Config('horovod-np1', 'horovodrun -np 1', ds, 1, 'horovodrun'),
        Config('horovod-np2', 'horovodrun -np 2', ds, 2, 'horovodrun'),
        Config('horovod-np4', 'horovodrun -np 4', ds, 4, 'horovodrun'),
        Config('mpi-np2', 'mpirun -np 2 --backend mpi (mpi4py)', ds, 2, 'mpirun',
               ['--backend', 'mpi']),
        # the same per-worker batch (256) as -np 1: the global batch grows with the workers
        Config('horovod-np2-weak', 'horovodrun -np 2 --batch-size 512', ds, 2, 'horovodrun',
               ['--batch-size', '512'], 'weak scaling'),
        Config('horovod-np4-weak', 'horovodrun -np 4 --batch-size 1024', ds, 4, 'horovodrun',
               ['--batch-size', '1024'], 'weak scaling'),
    ]


# --- running one configuration once -------------------------------------------------

def worker_env(package):
    """One OpenMP thread per process for every configuration, the anchors too (it
    made each of them faster here, the numpy floor 1.1-1.2x), and the package
    snapshot first on the path."""
    env = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ.get("PATH", "")}',
               OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', PYTHONPATH=str(package))
    for leftover in ('DISTSOFTMAX_FAULT', 'MXNET_CPU_WORKER_NTHREADS'):  # only what a config sets
        env.pop(leftover, None)
    return env


def command(cfg, data, epochs, scratch):
    """argv for one run, and the files it leaves: the metrics, one RSS line per rank."""
    metrics, rss = scratch / 'metrics.jsonl', scratch / 'rss.txt'
    # -a: every rank appends its own line; %M is that rank's peak RSS in KiB
    timed = [GNU_TIME, '-a', '-o', str(rss), '-f', '%M']
    if cfg.kind == 'anchor':
        script, *rest = cfg.args
        return timed + [PY, str(ANCHORS / script), data['dir'], str(epochs), *rest], metrics, rss
    run = [PY, '-m', 'distsoftmax', '--epochs', str(epochs), '--quiet', '--metrics', str(metrics),
           '--data-dir', data['dir'], *data['flags'], *cfg.args]
    if cfg.launcher == 'horovodrun':
        # horovodrun's own choice of controller (MPI when Horovod is built with it),
        # which passes --allow-run-as-root and gives localhost np slots itself
        prefix = [str(BIN / 'horovodrun'), '-np', str(cfg.workers)]
    elif cfg.launcher == 'mpirun':
        prefix = ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', str(cfg.workers),
                  '-x', 'OMP_NUM_THREADS', '-x', 'PATH', '-x', 'PYTHONUNBUFFERED', '-x', 'PYTHONPATH']
    else:
        prefix = []
    return prefix + timed + run, metrics, rss


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
    """CPU seconds that other processes took during a run: the machine's busy time
    less what this run's process tree used (all ranks are reaped into it)."""
    busy, own, steal = (b - a for a, b in zip(before, after))
    return {'other_cpu_s': max(0.0, busy - own), 'steal_s': steal}


def run_once(cfg, data, epochs, timeout, package):
    with tempfile.TemporaryDirectory(prefix='bench-') as tmp:
        argv, metrics, rss = command(cfg, data, epochs, Path(tmp))
        load = os.getloadavg()[0]
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        try:
            # cwd: python -m puts it first on sys.path, ahead of the editable install
            p = subprocess.run(argv, cwd=package, env={**worker_env(package), **cfg.env},
                               capture_output=True, text=True, timeout=timeout)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = 'timeout', str(e.stdout or ''), str(e.stderr or '')
        wall = time.perf_counter() - t0
        result = {'config': cfg.name, 'argv': argv, 'rc': rc, 'wall_s': wall, 'load1_before': load,
                  **noise(cpu0, cpu_seconds()), 'rss_mb': peak_rss_mb(rss)}
        summary = anchor_summary(out) if cfg.kind == 'anchor' else distsoftmax_summary(metrics)
        if rc != 0 or summary is None or len(result['rss_mb']) != cfg.workers:
            result['error'] = (f'rc {rc}, {len(result["rss_mb"])} RSS line(s) for {cfg.workers} '
                               f'worker(s); stderr tail:\n' + (err or out)[-2000:])
            return result
    result['raw'] = summary
    result['samples_per_s'] = summary['samples_per_s']
    result['seconds'] = summary['seconds']
    result['test_acc'] = summary['test_acc']
    if cfg.kind == 'anchor':
        # the anchors assume 60000 training samples; count the ones really used
        result['samples_per_s'] = epochs * data['n_train'] / summary['seconds']
    return result


def anchor_summary(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith('{')]
    return json.loads(lines[-1]) if lines else None


def distsoftmax_summary(metrics):
    """The summary object that --metrics writes last (rank 0 only)."""
    if not metrics.exists():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return rows[-1] if rows and rows[-1].get('summary') else None


# --- what is measured ------------------------------------------------------------------

def snapshot_package(where):
    """Copy distsoftmax/ once and run every configuration from the copy: the package
    may be edited while the bench runs, and the rounds must all measure one version."""
    shutil.copytree(ROOT / 'distsoftmax', where / 'distsoftmax',
                    ignore=shutil.ignore_patterns('__pycache__'))
    return where


# --- data ------------------------------------------------------------------------------

def prepare_data(args, where, package):
    """Real data, or N synthetic samples written as IDX files so that the anchors,
    which only read a directory, train on the same samples as distsoftmax."""
    if not args.synthetic:
        return {'dir': args.data_dir, 'flags': [], 'n_train': 60000, 'source': args.data_dir}
    sys.path.insert(0, str(package))
    from distsoftmax import data
    d = data.synthetic(seed=0, n_train=args.synthetic)
    where.mkdir()
    for split, images, labels in (('train', d.train_images, d.train_labels),
                                  ('t10k', d.test_images, d.test_labels)):
        data.write_idx(where / f'{split}-images-idx3-ubyte.gz', images, data.IMAGES_MAGIC)
        data.write_idx(where / f'{split}-labels-idx1-ubyte.gz', labels, data.LABELS_MAGIC)
    # --no-verify: the SHA-256 sums are those of the real files
    return {'dir': str(where), 'flags': ['--no-verify'], 'n_train': args.synthetic,
            'source': f'synthetic, {args.synthetic} training samples'}


def warm_up(data, package):
    """Load the shared libraries and the data files into the page cache once, so that
    the first configuration of round 1 does not pay for a cold disk alone."""
    subprocess.run([PY, '-c', 'import mxnet, numpy, mpi4py.MPI, horovod.mxnet'],
                   capture_output=True, env=worker_env(package))
    for f in Path(data['dir']).glob('*.gz'):
        f.read_bytes()


# --- statistics ------------------------------------------------------------------------

def ok_runs(runs, name):
    return [r for r in runs if r['config'] == name and 'error' not in r]


def median_of(runs, name, key):
    values = [r[key] for r in ok_runs(runs, name)]
    return statistics.median(values) if values else None


def worst_rss(run):
    return max(run['rss_mb'])


def round_ratios(runs, num, den, key='samples_per_s'):
    """num/den per round: the two runs of a round ran a few seconds apart."""
    by_round = {}
    for r in runs:
        if 'error' not in r and r['config'] in (num, den):
            by_round.setdefault(r['round'], {})[r['config']] = r[key]
    return [pair[num] / pair[den] for pair in by_round.values() if num in pair and den in pair]


def targets(runs, configs):
    """(target, measured, per-round values, met) rows; None where not measured."""
    rows = []
    for text, num, den, want in (('local >= 15x textbook samples/s', 'local', 'textbook', 15.0),
                                 ('local >= 1.0x numpy floor samples/s', 'local', 'numpy-floor', 1.0),
                                 ('horovodrun -np 2 >= 1.4x -np 1 samples/s (strong scaling)',
                                  'horovod-np2', 'horovod-np1', 1.4)):
        ratios = round_ratios(runs, num, den)
        value = statistics.median(ratios) if ratios else None
        rows.append((text, None if value is None else f'{value:.2f}x', [f'{x:.2f}' for x in ratios],
                     value is not None and value >= want))
    # RSS: the worst distsoftmax configuration, by its median over the repeats
    rss = {c.name: statistics.median(worst_rss(r) for r in ok_runs(runs, c.name))
           for c in configs if c.kind == 'distsoftmax' and ok_runs(runs, c.name)}
    worst = max(rss, key=rss.get) if rss else None
    rows.append(('peak RSS <= 300 MB per worker (worst distsoftmax config)',
                 None if worst is None else f'{rss[worst]:.0f} MB ({worst})',
                 [f'{worst_rss(r):.0f}' for r in ok_runs(runs, worst)] if worst else [],
                 worst is not None and rss[worst] <= 300))
    wall = median_of(runs, 'local', 'wall_s')
    rows.append(('local whole process <= 5 s (import, data load, verification included)',
                 None if wall is None else f'{wall:.2f} s',
                 [f'{r["wall_s"]:.2f}' for r in ok_runs(runs, 'local')],
                 wall is not None and wall <= 5.0))
    return rows


# --- writing ---------------------------------------------------------------------------

def code_digest(root=ROOT):
    """SHA-256 over distsoftmax/*.py, to name the version measured."""
    h = hashlib.sha256()
    for f in sorted((Path(root) / 'distsoftmax').glob('*.py')):
        h.update(f.name.encode() + b'\0' + f.read_bytes())
    return h.hexdigest()[:12]


def horovod_controller():
    """What plain horovodrun uses: MPI when Horovod is built with it, else Gloo."""
    r = subprocess.run([str(BIN / 'horovodrun'), '--check-build'], capture_output=True, text=True)
    controllers = r.stdout.partition('Available Controllers:')[2].partition('Available Tensor')[0]
    return 'MPI' if '[X] MPI' in controllers else 'Gloo' if '[X] Gloo' in controllers else 'unknown'


def machine(package):
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                if line.startswith('model name')), platform.processor() or 'unknown')

    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return 'not installed'
    def git(*cmd):
        return subprocess.run(['git', *cmd], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()
    # which version was copied: the commit, and which package files differ from it
    changed = [line[3:] for line in git('status', '--porcelain', '--', 'distsoftmax').splitlines()]
    commit = git('rev-parse', '--short', 'HEAD') or 'unknown'
    if changed:
        commit += ' with uncommitted changes in ' + ', '.join(changed)
    return {'cpu': cpu, 'cores': CORES, 'python': platform.python_version(),
            'mxnet': version('mxnet'), 'horovod': version('horovod'), 'numpy': version('numpy'),
            'mpi4py': version('mpi4py'), 'git': commit, 'code_digest': code_digest(package),
            'horovodrun_controller': horovod_controller(),
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}


def fmt(value, spec, missing='-'):
    return missing if value is None else format(value, spec)


def results_table(runs, configs):
    head = ('| config | what ran | workers | samples/s median (min-max) | x local | '
            'wall s median | peak RSS MB/worker median | test acc | note |')
    lines = [head, '|' + '---|' * 9]
    for c in configs:
        good = ok_runs(runs, c.name)
        failed = sum(r['config'] == c.name and 'error' in r for r in runs)
        note = c.note + (f'; {failed} run(s) failed, see results.json' if failed else '')
        if not good:
            lines.append(f'| {c.name} | {c.label} | {c.workers} | failed | | | | | {note} |')
            continue
        sps = [r['samples_per_s'] for r in good]
        vs_local = round_ratios(runs, c.name, 'local')
        lines.append(
            f'| {c.name} | {c.label} | {c.workers} | {statistics.median(sps):,.0f} '
            f'({min(sps):,.0f}-{max(sps):,.0f}) | '
            f'{fmt(statistics.median(vs_local) if vs_local else None, ".2f")} | '
            f'{statistics.median(r["wall_s"] for r in good):.2f} | '
            f'{statistics.median(worst_rss(r) for r in good):.0f} | '
            f'{statistics.median(r["test_acc"] for r in good):.4f} | {note} |')
    return '\n'.join(lines)


def write_markdown(path, runs, configs, info, args, data, elapsed):
    t_rows = ['| target | measured (median) | per round | met |', '|---|---|---|---|']
    target_rows = targets(runs, configs)
    for text, value, per_round, met in target_rows:
        status = 'not measured' if value is None else ('met' if met else 'missed')
        t_rows.append(f'| {text} | {value or "-"} | {", ".join(per_round) or "-"} | {status} |')
    loads = [r['load1_before'] for r in runs]
    changed = ('; the working tree changed during the run, the copy did not'
               if info['tree_changed'] else '')
    other = [r['other_cpu_s'] / r['wall_s'] for r in runs]
    quiet = 'quiet' if max(other) < 0.1 else 'not quiet: compare ratios, not absolute numbers'
    md = f"""# distsoftmax benchmark

Written by `python bench/run.py` ({' '.join(sys.argv[1:]) or 'no flags'}); raw runs in
`results.json`, plot in `scaling.png`.

- machine: {info['cpu']}, {info['cores']} cores usable
- python {info['python']}, mxnet {info['mxnet']}, horovod {info['horovod']},
  numpy {info['numpy']}, mpi4py {info['mpi4py']}
- distsoftmax as copied at the start: git {info['git']}; sources digest {info['code_digest']}{changed}
- horovodrun: its default controller, here {info['horovodrun_controller']}
- date: {info['date']}; {elapsed / 60:.1f} min in all
- data: {data['source']}; {args.epochs} epochs, global batch 256 unless noted
- {args.repeats} repeat(s) of every configuration, in alternation; 1-minute load average
  before a run: {min(loads):.2f} to {max(loads):.2f}; other processes' CPU use during a
  run (machine busy time less the run's own): median {statistics.median(other):.2f}, max
  {max(other):.2f} cores ({quiet})
- OMP_NUM_THREADS per process: 1, unless a config says otherwise

## Results

samples/s: training samples over the in-process time of all epochs, evaluation
included; wall: the whole process measured from outside (interpreter start,
imports, data load and verification, launcher); peak RSS: the largest rank's own
peak (GNU time around each rank); x local: per-round ratio to the local run, median.

{results_table(runs, configs)}

## Targets

Ratios measured in this run; {TARGETS_NOTE}.

{chr(10).join(t_rows)}

## Why the misses miss

{why(target_rows)}
"""
    path.write_text(md)


def plot(path, runs, configs):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def point(name):
        v = [r['samples_per_s'] for r in ok_runs(runs, name)]
        return (statistics.median(v), min(v), max(v)) if v else None

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    one = point('horovod-np1')
    series = (('horovodrun, batch 256 (strong)',
               [(1, 'horovod-np1'), (2, 'horovod-np2'), (4, 'horovod-np4')], 'o-'),
              ('horovodrun, 256 per worker (weak)',
               [(1, 'horovod-np1'), (2, 'horovod-np2-weak'), (4, 'horovod-np4-weak')], 's--'),
              ('mpirun --backend mpi', [(2, 'mpi-np2')], '^'))
    for label, members, style in series:
        pts = [(w, point(n)) for w, n in members if point(n)]
        if pts:
            ws, ps = zip(*pts)
            ax1.errorbar(ws, [p[0] for p in ps], yerr=[[p[0] - p[1] for p in ps],
                                                       [p[2] - p[0] for p in ps]],
                         fmt=style, capsize=3, label=label)
    if one:
        ax1.plot([1, 2, 4], [one[0] * w for w in (1, 2, 4)], ':', color='grey',
                 label='linear from -np 1')
    for name, color in (('local', 'red'), ('devices-cpu2', 'purple'), ('numpy-floor', 'green'),
                        ('textbook', 'grey')):
        p = point(name)
        if p:
            ax1.axhline(p[0], color=color, lw=1, ls='-.', label=name)
    ax1.set_xscale('log', base=2), ax1.set_yscale('log')
    ax1.set_xticks([1, 2, 4], ['1', '2', '4'])
    ax1.set_xlabel('workers'), ax1.set_ylabel('samples/s (median, min-max)')
    ax1.set_title('training throughput'), ax1.legend(fontsize=7)

    names = [c.name for c in configs if ok_runs(runs, c.name)]
    walls = [median_of(runs, n, 'wall_s') for n in names]
    ax2.barh(names, walls, color=['C3' if n == 'local' else 'C0' for n in names])
    ax2.axvline(5.0, color='k', ls='--', lw=1, label='5 s target (local)')
    ax2.invert_yaxis()
    ax2.set_xlabel('whole-process wall time, s (median)'), ax2.legend(fontsize=7)
    ax2.tick_params(axis='y', labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- main ------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--repeats', type=int, default=3, help='runs of every configuration (default 3)')
    p.add_argument('--epochs', type=int, default=5, help='epochs per run (default 5)')
    src = p.add_mutually_exclusive_group()
    src.add_argument('--data-dir', default=REAL_DATA,
                     help=f'Fashion-MNIST IDX files (default {REAL_DATA})')
    src.add_argument('--synthetic', type=int, metavar='N',
                     help='N synthetic training samples written as IDX files instead (smoke runs)')
    p.add_argument('--only', help='comma list of configurations, of: '
                                   + ', '.join(c.name for c in all_configs()))
    p.add_argument('--out', type=Path, default=ROOT / 'bench', help='output directory (default bench/)')
    p.add_argument('--timeout', type=float, default=600, help='seconds one run may take (default 600)')
    args = p.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        p.error('--repeats and --epochs must be positive')
    known = {c.name for c in all_configs()}
    wanted = args.only.split(',') if args.only else sorted(known)
    unknown = set(wanted) - known
    if unknown:
        p.error(f'unknown configuration(s) {", ".join(sorted(unknown))}; '
                f'known: {", ".join(sorted(known))}')
    args.configs = [c for c in all_configs() if c.name in wanted]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"{GNU_TIME} (GNU time) measures each rank's peak RSS: apt-get install time")
    if any(c.launcher == 'mpirun' for c in args.configs) and not shutil.which('mpirun'):
        sys.exit('mpirun not found: leave out the mpi configurations with --only')
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix='bench-') as scratch:
        scratch = Path(scratch)
        package = snapshot_package(scratch / 'pkg')
        info = machine(package)
        data = prepare_data(args, scratch / 'data', package)
        warm_up(data, package)
        for rnd in range(args.repeats):
            for cfg in args.configs:
                r = run_once(cfg, data, args.epochs, args.timeout, package)
                r['round'] = rnd + 1
                runs.append(r)
                shown = (f"{r['samples_per_s']:>9,.0f} samples/s, wall {r['wall_s']:5.2f} s, "
                         f"RSS {worst_rss(r):4.0f} MB, acc {r['test_acc']:.4f}"
                         if 'error' not in r else 'FAILED: ' + r['error'].splitlines()[0])
                print(f'round {rnd + 1}/{args.repeats} {cfg.name:<20} {shown}', flush=True)
    info['tree_changed'] = code_digest() != info['code_digest']
    elapsed = time.perf_counter() - started
    (args.out / 'results.json').write_text(json.dumps(
        {'machine': info, 'epochs': args.epochs, 'repeats': args.repeats, 'data': data['source'],
         'configs': [c.__dict__ for c in args.configs], 'runs': runs}, indent=1) + '\n')
    write_markdown(args.out / 'RESULTS.md', runs, args.configs, info, args, data, elapsed)
    plot(args.out / 'scaling.png', runs, args.configs)
    print(f'wrote {args.out / "RESULTS.md"}, results.json and scaling.png')
    failed = [r for r in runs if 'error' in r]
    for r in failed:
        print(f"run {r['config']} (round {r['round']}) failed: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
