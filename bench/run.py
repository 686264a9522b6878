"""python bench/run.py: distsoftmax's speed, measured side by side with its references.

One invocation runs every configuration --repeats times, in alternation
(A B C ... A B C ...), so that a slow minute on a noisy machine hits every
configuration alike instead of one. It writes, into --out (default bench/):

  RESULTS.md    the table of medians, the targets and the PyTorch peer as ratios
                measured in the same run, and the machine it ran on
  results.json  every run's raw numbers, for auditing
  scaling.png   throughput against worker count, and whole-process wall time

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
from bench import machine, measure, plot, report  # noqa: E402
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
    args = p.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        p.error('--repeats and --epochs must be positive')
    wanted = args.only.split(',') if args.only else [
        c.name for c in C.CONFIGS if args.torch or c.kind != C.TORCH]
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


def rounds(args, data, package):
    """Every configuration once per round, --repeats rounds; the runs, in order."""
    runs = []
    for rnd in range(1, args.repeats + 1):
        for cfg in args.configs:
            r = measure.run_once(cfg, data, args.epochs, args.timeout, package, args.torch)
            r['round'] = rnd
            runs.append(r)
            shown = (f"{r[C.SAMPLES]:>9,.0f} samples/s, wall {r[C.WALL]:5.2f} s, "
                     f"RSS {metric(r, C.RSS):4.0f} MB, acc {r['test_acc']:.4f}"
                     if 'error' not in r else 'FAILED: ' + r['error'].splitlines()[0])
            print(f'round {rnd}/{args.repeats} {cfg.name:<20} {shown}', flush=True)
    return runs


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
        measure.warm_up(data, package, args.torch)
        runs = rounds(args, data, package)
    info['tree_changed'] = machine.code_digest() != info['code_digest']
    elapsed = time.perf_counter() - started
    report.write_json(args.out / 'results.json', info, args, data, args.configs, runs)
    report.write_markdown(args.out / 'RESULTS.md', runs, args.configs, info, args, data,
                          elapsed, argv)
    plot.plot(args.out / 'scaling.png', runs, args.configs)
    print(f'wrote {args.out / "RESULTS.md"}, results.json and scaling.png')
    failed = [r for r in runs if 'error' in r]
    for r in failed:
        print(f"run {r['config']} (round {r['round']}) failed: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
