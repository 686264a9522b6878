"""bench/run.py end to end on a small synthetic set: the files it writes and their rows.

Not a speed test: the numbers of a 2000-sample epoch say nothing.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, env, horovod_available

BENCH = os.path.join(ROOT, 'bench', 'run.py')
ANCHORS = os.path.join(os.path.dirname(ROOT), 'shared', 'anchors')


def load_bench():
    spec = importlib.util.spec_from_file_location('bench_run', BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not os.access('/usr/bin/time', os.X_OK), reason='GNU time not installed')
def test_smoke_writes_table_plot_and_raw_runs(tmp_path):
    configs = ['local']
    if horovod_available() and shutil.which('mpirun'):
        configs.append('horovod-np2')
    if os.path.isfile(os.path.join(ANCHORS, 'numpy_floor.py')):
        configs.append('numpy-floor')  # an anchor, on the same synthetic IDX files
    r = subprocess.run([sys.executable, BENCH, '--synthetic', '2000', '--epochs', '1',
                        '--repeats', '1', '--only', ','.join(configs), '--out', str(tmp_path)],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr

    md = (tmp_path / 'RESULTS.md').read_text()
    for name in configs:
        assert f'| {name} |' in md
    for target in ('15x textbook', 'numpy floor', '1.4x -np 1', '300 MB', '5 s'):
        assert target in md
    assert 'repeat(s)' in md and 'mxnet 1.9.1' in md
    assert (tmp_path / 'scaling.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    raw = json.loads((tmp_path / 'results.json').read_text())
    assert sorted(r['config'] for r in raw['runs']) == sorted(configs)
    for run in raw['runs']:
        assert 'error' not in run
        assert run['samples_per_s'] > 0 and 0 <= run['test_acc'] <= 1
        workers = 2 if run['config'] == 'horovod-np2' else 1
        assert len(run['rss_mb']) == workers  # each rank's own peak, not the launcher's


def test_ratios_pair_runs_of_the_same_round():
    bench = load_bench()
    runs = [{'config': 'a', 'round': 1, 'samples_per_s': 10.0},
            {'config': 'b', 'round': 1, 'samples_per_s': 5.0},
            {'config': 'a', 'round': 2, 'samples_per_s': 30.0},
            {'config': 'b', 'round': 2, 'error': 'rc 1'},
            {'config': 'b', 'round': 3, 'samples_per_s': 1.0}]
    assert bench.round_ratios(runs, 'a', 'b') == [2.0]


def test_unknown_config_is_refused():
    r = subprocess.run([sys.executable, BENCH, '--only', 'local,nope'], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'nope' in r.stderr
