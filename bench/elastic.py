"""What elastic mode's commits cost: samples/s of an elastic Gloo run beside a
non-elastic Gloo run of the same training, side by side, on this host.

    .venv/bin/python bench/elastic.py [--np 2] [--rounds 3] [--samples 12000] [--epochs 3]
                                      [--commit-steps 16,4]

Each round runs, one after the other: horovodrun -np N --gloo (non-elastic),
then horovodrun -np N --min-np 1 --host-discovery-script (one slot on each of
localhost, 127.0.0.1, ...: elastic Gloo needs the workers on different
"hosts") for each DISTSOFTMAX_COMMIT_STEPS value. samples/s is the training's
(the metrics summary: epochs' samples over the training seconds, evaluation
included), so start-up is left out. Prints one line per configuration, the
median of the rounds, and the elastic runs' cost against the non-elastic one.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests'))
import harness  # noqa: E402


def run(cmd, env, metrics):
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f'bench/elastic.py: {" ".join(cmd[:8])} ... failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}')
    with open(metrics) as f:
        s = json.loads(f.read().splitlines()[-1])
    per = s['elastic_commit_seconds'] / s['elastic_commits'] if s.get('elastic_commits') else None
    return s['samples_per_s'], per


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--np', type=int, default=2)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--samples', type=int, default=12000)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--commit-steps', default='16,4')
    a = p.parse_args()
    hosts = ['localhost', '127.0.0.1', '127.0.0.2', '127.0.0.3'][:a.np]
    if len(hosts) < a.np:
        sys.exit('bench/elastic.py: at most 4 workers (one a loopback "host")')
    tmp = tempfile.mkdtemp(prefix='bench-elastic-')
    discover = os.path.join(tmp, 'discover')
    with open(discover, 'w') as f:
        f.write('#!/bin/sh\n' + ''.join(f'echo {h}:1\n' for h in hosts))
    os.chmod(discover, 0o755)
    flags = ['-m', 'distsoftmax', '--synthetic', str(a.samples), '--epochs', str(a.epochs),
             '--batch-size', str(a.batch_size), '--quiet']
    horovodrun = os.path.join(harness.BIN, 'horovodrun')
    # the same Horovod cycle on both sides: distsoftmax shortens it only where
    # every rank is on one host, and the elastic workers sit on two "hosts"
    base = harness.env(HOROVOD_CYCLE_TIME='0.1')
    configs = {'non-elastic': ([horovodrun, '-np', str(a.np), '--gloo', '-H', f'localhost:{a.np}'], {})}
    for k in a.commit_steps.split(','):
        configs[f'elastic, commit every {k} steps'] = (
            [horovodrun, '-np', str(a.np), '--min-np', '1', '--max-np', str(a.np), '--network-interface', 'lo',
             '--host-discovery-script', discover], {'DISTSOFTMAX_COMMIT_STEPS': k})
    got = {name: [] for name in configs}
    for r in range(a.rounds):
        for name, (launcher, extra) in configs.items():
            m = os.path.join(tmp, f'm{r}-{len(got[name])}.jsonl')
            got[name].append(run(launcher + [sys.executable, *flags, '--metrics', m], dict(base, **extra), m))
    ref = statistics.median(v for v, _ in got['non-elastic'])
    print(f'{a.np} workers, Gloo, {a.samples} samples x {a.epochs} epochs, batch {a.batch_size}, '
          f'{a.rounds} rounds (median samples/s of training)')
    for name, runs in got.items():
        values = [v for v, _ in runs]
        med = statistics.median(values)
        cost = '' if name == 'non-elastic' else f', {100 * (med / ref - 1):+.1f}% samples/s against non-elastic'
        per = [c for _, c in runs if c is not None]
        commit = f'; a mid-epoch commit took {1000 * statistics.median(per):.1f} ms (median)' if per else ''
        print(f'  {name:32s} {med:9.0f} samples/s  ({", ".join(f"{v:.0f}" for v in values)}){cost}{commit}')


if __name__ == '__main__':
    main()
