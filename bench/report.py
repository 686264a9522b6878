"""Writing what a bench run measured: RESULTS.md and results.json (scaling.png: plot.py).

derive() turns the runs and the phases into named figures (results.json's
"figures"); bench/WHY.md quotes them as {name} or {name:FORMAT}, filled in from
the same run when RESULTS.md quotes a section, so every number WHY.md gives is
one this run measured.
"""
import json
import re
import statistics
from pathlib import Path

from bench import configs as C
from bench import native
from bench import stepprofile as SP
from bench import summary as S

WHY_FILE = Path(__file__).resolve().parent / 'WHY.md'
PLACEHOLDER = re.compile(r'\{([a-z][a-z0-9_]*)(?::([^{}]+))?\}')
MISSING = '(not measured in this run)'


def why_sections(path=WHY_FILE):
    """{target key: its analysis} from WHY.md's '## key' sections."""
    text = Path(path).read_text() if Path(path).exists() else ''
    parts = re.split(r'^## +(\S+) *\n', text, flags=re.M)
    return {key: body.strip() for key, body in zip(parts[1::2], parts[2::2])}


def placeholders(text):
    return {m.group(1) for m in PLACEHOLDER.finditer(text)}


def fmt(value, spec=None):
    if value is None:
        return MISSING
    if spec:
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float):
        a = abs(value)
        return f'{value:,.0f}' if a >= 1000 else f'{value:.0f}' if a >= 100 else \
            f'{value:.1f}' if a >= 10 else f'{value:.2f}'
    if isinstance(value, int):
        return f'{value:,}'
    return str(value)


def fill(text, figures):
    """TEXT with each {name} or {name:spec} replaced by the run's figure."""
    def one(m):
        if m.group(1) not in figures:
            return MISSING
        return fmt(figures[m.group(1)], m.group(2))
    return PLACEHOLDER.sub(one, text)


def why(outcomes, sections=None, figures=None):
    """The analyses of the targets this run missed, by target key, with the run's figures."""
    sections = why_sections() if sections is None else sections
    missed = [o.target for o in outcomes if o.met is False]
    if not missed:
        return 'Every measured target is met.'
    return '\n\n'.join(f'**{t.describe()}** (`{t.key}`): '
                       + fill(sections.get(t.key, 'not analysed yet (no section in bench/WHY.md).'),
                              figures or {})
                       for t in missed)


# --- figures --------------------------------------------------------------------------

def _key(name):
    return name.replace('-', '_')


def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def derive(runs, configs, data, epochs, phases, info):
    """Every named figure of the run: config medians, target values, the limit, the
    profile, growth. None where the run did not measure it."""
    f = {'epochs': epochs, 'n_train': data['n_train'], 'cores': C.CORES}
    for cfg in configs:
        good = S.ok_runs(runs, cfg.name)
        k = _key(cfg.name)
        f[f'sps_{k}'] = _med([r[C.SAMPLES] for r in good])
        f[f'cpu_sps_{k}'] = _med([r.get(C.CPU_SAMPLES) for r in good])
        f[f'train_cpu_sps_{k}'] = _med([r.get('samples_per_train_cpu_s') for r in good])
        f[f'busy_{k}'] = _med([r.get('cores_busy') for r in good])
        f[f'wall_{k}'] = _med([r[C.WALL] for r in good])
        f[f'rss_{k}'] = _med([S.metric(r, C.RSS) for r in good])
        if f[f'sps_{k}']:   # one global step: its batch over the samples/s
            f[f'step_ms_{k}'] = 256 * (cfg.workers if cfg.weak else 1) / f[f'sps_{k}'] * 1e3
            f[f'train_s_{k}'] = epochs * data['n_train'] / f[f'sps_{k}']
        kernels = sorted({r['blas']['kernel'] for r in good if r.get('blas')})
        if kernels:
            f[f'kernel_{k}'] = ', '.join(kernels)
    for t in C.TARGETS + C.PEERS + C.LIMITS:
        o = S.evaluate(t, runs)
        f[f'target_{_key(t.key)}'] = o.value
        if len(t.num) > 1 and o.measured:
            f[f'best_{_key(t.key)}'] = o.best()
    # the limit
    n_test = data.get('n_test') or 10000
    f['n_test'] = n_test
    fl = native.flops(data['n_train'], n_test, epochs)
    peaks = [p for p in phases.get('peak', []) if 'gflops' in p]
    f.update(step_mflop=fl['per_step'] / 1e6, job_gflop=fl['total'] / 1e9, flop_formula=fl['formula'],
             peak_gflops=max((p['gflops'] for p in peaks), default=None),
             peak_gflops_cpu=max((p['gflops_per_cpu_s'] for p in peaks), default=None),
             peak_vector_bits=peaks[0]['vector_bits'] if peaks else None,
             read_gb_s=max((p['read_gb_s'] for p in peaks), default=None),
             stream_mb=native.bytes_streamed(data['n_train'], n_test, epochs) / 1e6)
    samples = epochs * data['n_train']
    f['data_mb'] = (data['n_train'] + n_test) * native.D / 1e6   # the uint8 images, once
    if f.get('wall_horovod_np2') and f.get('wall_mpirun_horovod_np2'):
        f['horovodrun_extra_s'] = f['wall_horovod_np2'] - f['wall_mpirun_horovod_np2']
    f['bound_sps'] = native.bound(fl['total'], samples, f['peak_gflops']) if peaks else None
    f['stream_ms'] = f['stream_mb'] / f['read_gb_s'] if f['read_gb_s'] else None
    f['arith_ms'] = fl['total'] / (f['peak_gflops'] * 1e9) * 1e3 if peaks else None
    for name in ('local', 'c_floor', 'numpy_floor', 'numpy_floor_unset'):
        if f['bound_sps'] and f.get(f'sps_{name}'):
            f[f'{name}_of_bound'] = f[f'sps_{name}'] / f['bound_sps']
        if f['bound_sps'] and f.get(f'train_cpu_sps_{name}'):
            f[f'{name}_cpu_of_bound'] = f[f'train_cpu_sps_{name}'] / f['bound_sps']
    build = (info.get('native') or {}).get('c_floor') or {}
    f['c_floor_mode'] = build.get('mode')
    # the profile
    if phases.get('profile'):
        f.update(SP.figures(phases['profile']))
        if f.get('b256_cpu_us'):
            f['train_cpu_sps_local_profile'] = 256e6 / f['b256_cpu_us']
            if f['bound_sps']:
                f['local_cpu_of_bound'] = f['train_cpu_sps_local_profile'] / f['bound_sps']
        f['profile_load_max'] = max(p['load1_before'] for p in phases['profile'])
    # growth
    for n in sorted({g['n_train'] for g in phases.get('growth', [])}):
        good = [g for g in phases['growth'] if g['n_train'] == n and 'error' not in g]
        f[f'growth_{n}_sps'] = _med([g['samples_per_s'] for g in good])
        f[f'growth_{n}_rss'] = _med([max(g['rss_mb']) for g in good])
    f.update(SP.context_limit())
    feats = info.get('mxnet_features')
    f['int64_tensor_size'] = None if feats is None else 'INT64_TENSOR_SIZE' in feats
    loads = [r['load1_before'] for r in runs if 'load1_before' in r]
    f['load_min'], f['load_max'] = (min(loads), max(loads)) if loads else (None, None)
    return f


def write_json(path, info, args, data, configs, runs, phases=None, figures=None):
    path.write_text(json.dumps(
        {'machine': info, 'epochs': args.epochs, 'repeats': args.repeats, 'data': data['source'],
         'configs': [dict(c.__dict__, note=c.note) for c in configs], 'runs': runs,
         'phases': phases or {}, 'figures': figures or {}},
        indent=1, default=str) + '\n')


# --- RESULTS.md ------------------------------------------------------------------------

def header(info, args, data, runs, elapsed, argv, figures):
    loads = [r['load1_before'] for r in runs if 'load1_before' in r] or [0.0]
    other = [r['other_cpu_s'] / r['wall_s'] for r in runs if r.get('wall_s')] or [0.0]
    quiet = 'quiet' if max(other) < 0.1 else 'not quiet: compare ratios, not absolute numbers'
    changed = ('; the working tree changed during the run, the copy did not'
               if info['tree_changed'] else '')
    torch = (f'torch {info["torch"]} ({info["torch_python"]})' if info['torch']
             else 'torch: not run (no --torch PYTHON given): the PyTorch rows and peer ratios '
                  'are skipped')
    env = info.get('environment') or {}
    env_text = ', '.join(f'{k}={v}' for k, v in env.items()) or 'none set'
    kernel = figures.get('kernel_numpy_floor')
    build = (info.get('native') or {}).get('c_floor') or {}
    flags = ', '.join(info.get('cpu_flags') or []) or 'none of avx2/fma/avx512'
    c_text = (f"mode {build['mode']} (`{build['command']}`; {build['compiler']})" if 'mode' in build
              else build.get('error', 'not built'))
    return f"""# distsoftmax benchmark

Written by `python bench/run.py` ({' '.join(argv) or 'no flags'}); raw runs in
`results.json`, plot in `scaling.png`.

- machine: {info['cpu']}, {info['cores']} cores usable; CPU flags: {flags}
- python {info['python']}, mxnet {info['mxnet']}, horovod {info['horovod']},
  numpy {info['numpy']}, mpi4py {info['mpi4py']}
- {torch}
- distsoftmax as copied at the start: git {info['git']}; sources digest {info['code_digest']}{changed}
- horovodrun: its default controller, here {info['horovodrun_controller']}
- the C floor: {c_text}
- numpy floor's BLAS kernel: {kernel or 'not recorded'}; OPENBLAS_*, MXNET_*, OMP_* in the
  bench's environment: {env_text} (every run gets OMP_NUM_THREADS=1 on top)
- date: {info['date']}; {elapsed / 60:.1f} min in all
- data: {data['source']}; {args.epochs} epoch(s), global batch 256 unless noted
- {args.repeats} repeat(s) of every configuration, in alternation; 1-minute load average
  before a run: {min(loads):.2f} to {max(loads):.2f} (per round: "Rounds"); other processes' CPU
  use during a run (machine busy time less the run's own): median {statistics.median(other):.2f},
  max {max(other):.2f} cores ({quiet})
- OMP_NUM_THREADS per process: 1, unless a config says otherwise (the anchors and the
  PyTorch peer too)
"""


def bound_row(f):
    if not f.get('bound_sps'):
        return None
    x_local = f'{f["bound_sps"] / f["sps_local"]:.1f}' if f.get('sps_local') else '-'
    return (f"| bound | arithmetic bound: {f['job_gflop']:.2f} GFLOP at one core's measured fp32 "
            f"peak, {f['peak_gflops']:.0f} GFLOP/s | 1 | {f['bound_sps']:,.0f} | "
            f"{f['bound_sps']:,.0f} | 1.00 | {x_local} | - | - | - | derived, not run |")


def limit_section(f, runs):
    if not f.get('peak_gflops'):
        return 'Not measured: the peak probe (bench/peak.c) did not build or run.'
    rows = ['| what | samples/s (wall) | samples per CPU-s of its training part | '
            'share of the bound (wall) | share of the bound (CPU) |', '|---|---|---|---|---|']

    def row(label, sps, cpu_sps):
        share = f'{sps / f["bound_sps"]:.1%}' if sps else '-'
        cshare = f'{cpu_sps / f["bound_sps"]:.1%}' if cpu_sps else '-'
        rows.append(f'| {label} | {fmt(sps) if sps else "-"} | {fmt(cpu_sps) if cpu_sps else "-"} '
                    f'| {share} | {cshare} |')
    row('arithmetic bound (one core)', f['bound_sps'], f['bound_sps'])
    row(f"C floor, mode {f.get('c_floor_mode') or '?'} (its own CPU clock)", f.get('sps_c_floor'),
        f.get('train_cpu_sps_c_floor'))
    row(f"numpy floor, kernel {f.get('kernel_numpy_floor') or '?'} (CPU between its two timer calls)",
        f.get('sps_numpy_floor'), f.get('train_cpu_sps_numpy_floor'))
    if f.get('sps_numpy_floor_unset'):
        row(f"numpy floor, OPENBLAS_* unset, kernel {f.get('kernel_numpy_floor_unset') or '?'}",
            f['sps_numpy_floor_unset'], f.get('train_cpu_sps_numpy_floor_unset'))
    row('distsoftmax local (CPU: the profile\'s training steps, batch 256, no evaluation)',
        f.get('sps_local'), f.get('train_cpu_sps_local_profile'))
    limits = [S.evaluate(t, runs) for t in C.LIMITS]
    return f"""The job's arithmetic: {f['flop_formula']} = {f['job_gflop']:.2f} GFLOP
({f['step_mflop']:.2f} MFLOP a step of 256: the forward product and the weight gradient,
2 x 784 x 10 multiply-adds each a sample; no input gradient is needed; the test
set's forward every epoch). One core's fp32 peak, measured each round by a
{f['peak_vector_bits']}-bit FMA loop built at run time (bench/peak.c; the highest round counts, load
lowers it): {f['peak_gflops']:.1f} GFLOP/s per wall second, {f['peak_gflops_cpu']:.1f} per CPU second.
At that peak the job takes {f['arith_ms']:.1f} ms: {f['bound_sps']:,.0f} samples/s. Its uint8 pixels
({f['stream_mb']:.0f} MB a run) stream in {f['stream_ms']:.1f} ms at one core's measured read bandwidth
({f['read_gb_s']:.1f} GB/s): memory is not the bound.

{chr(10).join(rows)}

Ratios within a round (median over the rounds), no thresholds:

{S.targets_table(limits, with_status=False)}"""


def blas_section(runs, info, figures=None):
    rows = ['| config | kernel | library | threads | OPENBLAS_* in force | read by |',
            '|---|---|---|---|---|---|']
    seen = set()
    for r in runs:
        b = r.get('blas')
        if not b:
            continue
        lib = b['blas'][0] if b['blas'] else {}
        key = (r['config'], b['kernel'], json.dumps(b['openblas_env'], sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        env = ', '.join(f'{k}={v}' for k, v in b['openblas_env'].items()) or 'none'
        rows.append(f"| {r['config']} | {b['kernel']} | {lib.get('library')} {lib.get('version')} | "
                    f"{lib.get('threads')} | {env} | {b['read_by']} |")
    mx = (figures or {}).get('kernel_mxnet')
    if mx:
        rows.append(f"| local (the profile's run) | {mx} | mxnet's own libopenblas | "
                    f"(in the kernel column) | the bench's (header) | the same |")
    if len(rows) == 2:
        return 'Not recorded: no numpy-floor run finished.'
    unset = any(v in (info.get('environment') or {}) for v in C.OPENBLAS_VARS)
    note = ('numpy-floor-unset ran with both removed from its environment alone.' if unset else
            f"Neither {' nor '.join(C.OPENBLAS_VARS)} is set here: OpenBLAS chose the kernel from "
            'the CPU itself, and a default run leaves numpy-floor-unset out (it would run the same).')
    return (f"Read inside the anchor's process (bench/blas_probe.py) after numpy loaded its "
            f"bundled OpenBLAS. The target holds local to numpy-floor as the environment "
            f"gives it (bench/README.md says why). {note}\n\n" + '\n'.join(rows))


def profile_section(f):
    if not f.get('b256_wall_us'):
        return 'Not measured (--no-profile, or every profile run failed: see results.json).'
    rows = ['| run | steps | wall us | CPU us | Python thread (dispatch) us | engine threads us | '
            'cores busy | forward call us | backward() us | trainer.step us | rest of the loop us |',
            '|' + '---|' * 11]
    for kind, label in (('b256', 'batch 256'), ('b128', 'batch 128'),
                        ('naive', 'batch 256, NaiveEngine'), ('ops', 'batch 256, MXNet profiler on')):
        if f.get(f'{kind}_wall_us'):
            v = [f.get(f'{kind}_{x}') for x in ('steps', 'wall_us', 'cpu_us', 'dispatch_us',
                                                 'engine_us', 'cores_busy', 'forward_us',
                                                 'backward_us', 'trainer_step_us', 'loop_other_us')]
            rows.append(f'| {label} | ' + ' | '.join(fmt(x) for x in v) + ' |')
    share = fmt(f['fc_cast_share'], '.0%') if f.get('fc_cast_share') else '-'
    ops = ['| operator | calls a step | us a step |', '|---|---|---|']
    ops += [f'| {n} | {c:.2f} | {u:.1f} |' for n, c, u in f.get('top_operators') or []]
    c = (f"C floor ({f['c_mode']}) per step, CPU us: gather and convert {f['c_gather_us']:.1f}, "
         f"forward {f['c_forward_us']:.1f}, softmax and loss {f['c_softmax_us']:.1f}, backward and "
         f"update {f['c_backward_us']:.1f}; MXNet's FullyConnected forward and backward take "
         f"{fmt(f.get('fc_vs_c'))}x the C floor's forward plus backward."
         if f.get('c_step_us') else 'C floor phases: not measured.')
    ceiling = (f"Two ranks of half a batch on {f['cores']} cores: a global step needs at least "
               f"2 x {f['b128_cpu_us']:.0f} us CPU over {f['cores']} cores, and at least one rank's own "
               f"step wall ({f['b128_wall_us']:.0f} us, measured alone), against one process's "
               f"{f['b256_wall_us']:.0f} us: a ceiling of {f['ceiling_2w']:.2f}x local before any "
               f"allreduce (half a batch saves {f['half_batch_saves']:.0%} of a step's CPU)."
               if f.get('ceiling_2w') else '')
    return f"""distsoftmax local through its CLI (bench/profile_step.py), per training step (the
epochs after the first; evaluation left out). The Python thread's CPU is the
dispatch: the objective call, `backward()`, `trainer.step()` and the loop; what
the process used beyond it ran on MXNet's engine threads.

{chr(10).join(rows)}

Top operators under MXNet's profiler, with bulk execution off so that each
operator is timed alone (MXNET_EXEC_BULK_EXEC_TRAIN=0; by default the forward's
operators run as one segment): {fmt(f.get('ops_per_step'))} operations and
{fmt(f.get('op_us_per_step'))} us a step in all (that run's step wall is
{fmt(f.get('ops_profiler_slowdown'))}x the plain run's); FullyConnected forward and
backward {fmt(f.get('fc_us'))} us, the uint8 cast {fmt(f.get('cast_us'))} us: {share} of the operator time:

{chr(10).join(ops)}

{c}

{ceiling}

`import mxnet` alone: {fmt(f.get('import_mxnet_s'))} s; libmxnet's pages resident at the end of a
run: {fmt(f.get('libmxnet_rss_mb'))} MB."""


def growth_section(f, phases):
    good = [g for g in phases.get('growth', []) if 'error' not in g]
    sizes = sorted({g['n_train'] for g in phases.get('growth', [])})
    lim = (f"The pip mxnet is built {'with' if f.get('int64_tensor_size') else 'without'} "
           f"INT64_TENSOR_SIZE: an NDArray holds at most 2^31 - 1 = {f['max_elements']:,} elements, "
           f"and one context's training images are one uint8 NDArray of 784 elements a sample, so "
           f"a context stops at {f['max_samples_per_context']:,} training samples "
           f"({f['times_fashion_mnist']:.1f}x Fashion-MNIST), whatever the layout: each context "
           f"holds the whole training set (computed, not run).")
    if not sizes:
        return 'Not measured (--growth none).\n\n' + lim
    rows = ['| training samples | samples/s median | samples per CPU-s, whole process | '
            'peak RSS MB | wall s | runs |', '|---|---|---|---|---|---|']
    for n in sizes:
        g = [x for x in good if x['n_train'] == n]
        if not g:
            rows.append(f'| {n:,} | failed | | | | 0 |')
            continue
        rows.append(f"| {n:,} | {_med([x['samples_per_s'] for x in g]):,.0f} | "
                    f"{_med([x['samples_per_cpu_s'] for x in g]):,.0f} | "
                    f"{_med([max(x['rss_mb']) for x in g]):.0f} | "
                    f"{_med([x['wall_s'] for x in g]):.2f} | "
                    f"{len(g)} |")
    epochs = good[0]['epochs'] if good else '?'
    return (f"distsoftmax local on the run's training set repeated to N samples (IDX files written "
            f"once; the test set unchanged), {epochs} epoch(s) each, once a round:\n\n" + '\n'.join(rows)
            + '\n\n' + lim)


def rounds_section(runs, phases):
    rows = ['| round | fp32 peak GFLOP/s | 1-min load before its runs (min-max) | '
            'other processes\' CPU, cores (median, max) | load before the profile |',
            '|---|---|---|---|---|']
    peaks = {p['round']: p for p in phases.get('peak', [])}
    profs = {p['round']: p for p in phases.get('profile', [])}
    for rnd in sorted({r['round'] for r in runs}):
        rr = [r for r in runs if r['round'] == rnd]
        loads = [r['load1_before'] for r in rr if 'load1_before' in r]
        other = [r['other_cpu_s'] / r['wall_s'] for r in rr if r.get('wall_s')]
        pk = peaks.get(rnd, {})
        rows.append(f"| {rnd} | {fmt(pk.get('gflops'))} | {min(loads):.2f}-{max(loads):.2f} | "
                    f"{statistics.median(other):.2f}, {max(other):.2f} | "
                    f"{fmt(profs[rnd]['load1_before']) if rnd in profs else '-'} |")
    return '\n'.join(rows)


def write_markdown(path, runs, configs, info, args, data, elapsed, argv, phases=None, figures=None):
    phases = phases or {}
    figures = figures if figures is not None else derive(runs, configs, data, args.epochs, phases, info)
    targets = [S.evaluate(t, runs) for t in C.TARGETS]
    peers = [S.evaluate(t, runs) for t in C.PEERS]
    peers_text = (S.targets_table(peers, with_status=False) if info['torch'] else
                  'Skipped: no `--torch PYTHON` was given, so no PyTorch configuration ran.')
    extra = [r for r in (bound_row(figures),) if r]
    kernel = figures.get('kernel_numpy_floor') or 'not recorded'
    path.write_text(f"""{header(info, args, data, runs, elapsed, argv, figures)}
## Results

samples/s: training samples over the in-process time of all epochs, evaluation
included; samples per CPU-s: the same samples over the CPU time of the whole
process tree (every rank and launcher, interpreter start, imports and data load
included: getrusage of the reaped children), which another process on the
machine moves far less than wall time; cores busy: that CPU time over the wall;
wall: the whole process measured from outside (interpreter start, imports, data
load and verification, launcher); peak RSS: the largest rank's own peak (GNU time
around each rank); x local: per-round ratio to the local run, median.

{S.results_table(runs, configs, extra)}

## The limit

{limit_section(figures, runs)}

## The numpy floor's BLAS kernel

{blas_section(runs, info, figures)}

## Per-step profile

{profile_section(figures)}

## How cost grows with work

{growth_section(figures, phases)}

## Rounds

{rounds_section(runs, phases)}

## Targets

Each value is taken per round (runs next to each other), then the median of the
rounds; "best 2-worker layout" is the fastest of
{', '.join(c.name for c in C.TWO_WORKER_LAYOUTS)} in each round (the one named won
most rounds). The numpy floor is numpy-floor, kernel {kernel}.

{S.targets_table(targets)}

## Peer: PyTorch

The same model and math in PyTorch (`../shared/anchors/torch_*.py`), as ratios
within a round; above 1 means distsoftmax is faster (or, for RSS, larger).

{peers_text}

## Why the misses miss

{why(targets, figures=figures)}
""")
