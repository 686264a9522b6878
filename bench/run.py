"""python bench/run.py: distsoftmax's speed, measured side by side with its references.

One invocation runs every configuration --repeats times, in alternation
(A B C ... A B C ...), so that a slow minute on a noisy machine hits every
configuration alike instead of one. It writes, into --out (default bench/):

  RESULTS.md    the table of medians, the targets and the PyTorch peer as ratios
                measured in the same run, and the machine it ran on
  results.json  every run's raw numbers, for auditing
  scaling.png   throughput against worker count, and whole-process wall time

Each round also measures the machine's fp32 peak (bench/peak.c, built at run
time), the per-step profile and how cost grows with work (bench/stepprofile.py);
the C floor is built at the start (bench/native.py).

What is run: bench/configs.py; how one run is measured: bench/measure.py; how
the runs become numbers: bench/summary.py.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench import configs as C  # noqa: E402
from bench import machine, measure, native, plot, report  # noqa: E402
from bench import stepprofile as SP  # noqa: E402
from bench.summary import metric  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--repeats', type=int, default=3, help='runs of every configuration (default 3)')
    p.add_argument('--epochs', type=int, default=5, help='epochs per run (default 5)')
    src = p.add_mutually_exclusive_group()
    src.add_argument('--data-dir', default=measure.REAL_DATA,
                     help=f'Fashion-MNIST IDX files (default {measure.REAL_DATA})')
    src.add_argument('--synthetic', type=int, metavar='N',
                     help='N synthetic training samples written as IDX files instead (smoke runs)')
    p.add_argument('--torch', metavar='PYTHON',
                   help='an interpreter with torch (its own venv) for the PyTorch peer; '
                        'without it the torch configurations are skipped')
    p.add_argument('--only', help='comma list of configurations, of: '
                                   + ', '.join(C.BY_NAME))
    p.add_argument('--out', type=Path, default=ROOT / 'bench', help='output directory (default bench/)')
    p.add_argument('--timeout', type=float, default=600, help='seconds one run may take (default 600)')
    p.add_argument('--no-profile', action='store_true',
                   help='skip the per-step profile of every round')
    p.add_argument('--growth', default=','.join(map(str, SP.GROWTH)),
                   help='training-set sizes of the growth phase, comma list, or none '
                        f'(default {",".join(map(str, SP.GROWTH))})')
    p.add_argument('--growth-epochs', type=int, default=2, help='epochs of a growth run (default 2)')
    args = p.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1 or args.growth_epochs < 1:
        p.error('--repeats, --epochs and --growth-epochs must be positive')
    try:
        args.growth = [] if args.growth == 'none' else [int(n) for n in args.growth.split(',')]
    except ValueError:
        p.error(f'--growth {args.growth}: a comma list of sizes, or none')
    wanted = (args.only.split(',') if args.only else
              [c.name for c in C.default_configs(bool(args.torch))])
    unknown = [n for n in wanted if n not in C.BY_NAME]
    if unknown:
        p.error(f'unknown configuration(s) {", ".join(unknown)}; known: {", ".join(C.BY_NAME)}')
    args.configs = [c for c in C.CONFIGS if c.name in wanted]
    if not args.torch and any(c.kind == C.TORCH for c in args.configs):
        p.error('the torch configurations need --torch PYTHON')
    if args.torch and not os.access(args.torch, os.X_OK):
        p.error(f'--torch {args.torch}: not an executable')
    return args


def check_tools(configs):
    if not os.access(measure.GNU_TIME, os.X_OK):
        sys.exit(f"{measure.GNU_TIME} (GNU time) measures each rank's peak RSS: "
                 "apt-get install time")
    if any(c.launcher == 'mpirun' for c in configs) and not shutil.which('mpirun'):
        sys.exit('mpirun not found: leave out the mpirun configurations with --only')


def rounds(args, data, package, tools):
    """Every configuration once per round, --repeats rounds, then the round's peak,
    profile and growth runs. Returns the runs, in order, and the phases' records
    ({'peak': [...], 'profile': [...], 'growth': [...]}, each entry with its round)."""
    runs, phases = [], {'peak': [], 'profile': [], 'growth': []}
    for rnd in range(1, args.repeats + 1):
        tag = f'round {rnd}/{args.repeats}'
        if 'binary' in tools['peak']:
            pk = {**native.measure_peak(tools['peak']['binary']), 'round': rnd,
                  'load1_before': os.getloadavg()[0]}
            phases['peak'].append(pk)
            print(f"{tag} {'fp32 peak':<20} {pk.get('gflops', 0):9.1f} GFLOP/s one core, "
                  f"read {pk.get('read_gb_s', 0):.1f} GB/s, load {pk['load1_before']:.2f}", flush=True)
        for cfg in args.configs:
            r = measure.run_once(cfg, data, args.epochs, args.timeout, package, args.torch,
                                 tools['c_floor'])
            r['round'] = rnd
            runs.append(r)
            shown = (f"{r[C.SAMPLES]:>9,.0f} samples/s, {r.get(C.CPU_SAMPLES) or 0:>9,.0f} /CPU-s, "
                     f"wall {r[C.WALL]:5.2f} s, RSS {metric(r, C.RSS):4.0f} MB, "
                     f"acc {r['test_acc']:.4f}, load {r['load1_before']:.2f}"
                     if 'error' not in r else 'FAILED: ' + r['error'].splitlines()[0])
            print(f'{tag} {cfg.name:<20} {shown}', flush=True)
        if not args.no_profile:
            prof = SP.profile_round(data, args.epochs, args.timeout, package, tools['c_floor'])
            prof['round'] = rnd
            phases['profile'].append(prof)
            bad = [r['profile'] for r in prof['runs'] if 'error' in r]
            print(f"{tag} {'profile':<20} {len(prof['runs']) - len(bad)} run(s) ok"
                  + (f", failed: {', '.join(bad)}" if bad else ''), flush=True)
        for g in SP.growth_round(tools['growth'], args.growth_epochs, args.timeout, package):
            g['round'] = rnd
            phases['growth'].append(g)
            shown = (f"{g['samples_per_s']:>9,.0f} samples/s, RSS {max(g['rss_mb']):5.0f} MB"
                     if 'error' not in g else 'FAILED: ' + g['error'].splitlines()[0])
            print(f"{tag} {'growth ' + str(g['n_train']):<20} {shown}", flush=True)
    return runs, phases


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    check_tools(args.configs)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='bench-') as scratch:
        scratch = Path(scratch)
        package = measure.snapshot_package(scratch / 'pkg')
        info = machine.machine(package, args.torch)
        data = measure.prepare_data(args.data_dir, args.synthetic, scratch / 'data', package)
        # the C floor serves its configuration and the profile's phases alike
        wants_c = any(c.kind == C.NATIVE for c in args.configs) or not args.no_profile
        tools = {'c_floor': native.build_c_floor(scratch / 'native') if wants_c else None,
                 'peak': native.build_peak(scratch / 'native')}
        tools['growth'] = SP.tiled_data(data['dir'], args.growth, scratch / 'growth')
        for name, built in tools.items():
            if isinstance(built, dict) and 'error' in built:
                print(f'bench: {name}: {built["error"]}', file=sys.stderr)
        measure.warm_up(data, package, args.torch)
        runs, phases = rounds(args, data, package, tools)
    info['tree_changed'] = machine.code_digest() != info['code_digest']
    info['native'] = {k: ({f: v for f, v in t.items() if f != 'binary'} if t else None)
                      for k, t in tools.items() if k != 'growth'}
    elapsed = time.perf_counter() - started
    figures = report.derive(runs, args.configs, data, args.epochs, phases, info)
    report.write_json(args.out / 'results.json', info, args, data, args.configs, runs, phases,
                      figures)
    report.write_markdown(args.out / 'RESULTS.md', runs, args.configs, info, args, data,
                          elapsed, argv, phases, figures)
    plot.plot(args.out / 'scaling.png', runs, args.configs)
    print(f'wrote {args.out / "RESULTS.md"}, results.json and scaling.png')
    failed = [r for r in runs if 'error' in r]
    for r in failed:
        print(f"run {r['config']} (round {r['round']}) failed: {r['error']}", file=sys.stderr)
    phase_failed = [(f"profile {r['profile']}", p['round'], r['error'])
                    for p in phases['profile'] for r in p['runs'] if 'error' in r]
    phase_failed += [(f"growth {g['n_train']}", g['round'], g['error'])
                     for g in phases['growth'] if 'error' in g]
    for what, rnd, error in phase_failed:
        print(f'{what} (round {rnd}) failed: {error}', file=sys.stderr)
    return 1 if failed or phase_failed else 0


if __name__ == '__main__':
    sys.exit(main())
