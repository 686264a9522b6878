"""bench/ end to end on small synthetic sets, its arithmetic, and tests/harness.py.

Not a speed test: the numbers of a 2000-sample epoch say nothing. The PyTorch
rows run only where DISTSOFTMAX_BENCH_TORCH names an interpreter with torch.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

import harness
from harness import ROOT

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from bench import configs as C  # noqa: E402
from bench import report, summary  # noqa: E402

BENCH = os.path.join(ROOT, 'bench', 'run.py')
ACCURACY = os.path.join(ROOT, 'bench', 'accuracy.py')
ANCHORS = os.path.join(os.path.dirname(ROOT), 'shared', 'anchors')
TORCH = os.environ.get('DISTSOFTMAX_BENCH_TORCH')
needs_gnu_time = pytest.mark.skipif(not os.access('/usr/bin/time', os.X_OK),
                                    reason='GNU time not installed')


def bench(*args, timeout=600):
    return subprocess.run([sys.executable, BENCH, *args], cwd=ROOT, env=harness.launch_env(),
                          capture_output=True, text=True, timeout=timeout)


def smoke(out, configs, *extra):
    r = bench('--synthetic', '2000', '--epochs', '1', '--repeats', '1',
              '--only', ','.join(configs), '--out', str(out), *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    raw = json.loads((out / 'results.json').read_text())
    assert sorted(run['config'] for run in raw['runs']) == sorted(configs)
    for run in raw['runs']:
        assert 'error' not in run, run['error']
        assert run['samples_per_s'] > 0 and 0 <= run['test_acc'] <= 1
        # each rank's own peak, not the launcher's
        assert len(run['rss_mb']) == C.BY_NAME[run['config']].workers
    return (out / 'RESULTS.md').read_text(), raw


@needs_gnu_time
def test_smoke_writes_table_plot_and_raw_runs(tmp_path):
    configs = [C.LOCAL.name]
    if os.path.isfile(os.path.join(ANCHORS, 'numpy_floor.py')):
        configs.append(C.NUMPY_FLOOR.name)  # an anchor, on the same synthetic IDX files
    if harness.horovod_available() and shutil.which('mpirun'):
        # one run through each launcher path: horovodrun --gloo, plain mpirun
        configs += [C.HOROVOD_NP2_GLOO.name, C.MPI_NP2.name]
    md, raw = smoke(tmp_path, configs)
    for name in configs:
        assert f'| {name} |' in md
    for target in C.TARGETS:
        assert f'| {target.describe()} |' in md
    assert f"{raw['machine']['cpu']}, {raw['machine']['cores']} cores" in md
    assert 'repeat(s)' in md and 'mxnet 1.9.1' in md
    assert 'no --torch PYTHON given' in md and 'Skipped: no `--torch PYTHON`' in md
    assert (tmp_path / 'scaling.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@needs_gnu_time
@pytest.mark.skipif(not TORCH, reason='DISTSOFTMAX_BENCH_TORCH (a python with torch) not set')
def test_smoke_torch_peer(tmp_path):
    configs = [C.LOCAL.name, C.TORCH_TUNED.name, C.TORCHRUN_TUNED.name]
    md, raw = smoke(tmp_path, configs, '--torch', TORCH)
    assert raw['machine']['torch']
    for peer in C.PEERS:
        assert f'| {peer.describe()} |' in md
    assert '| local samples/s / PyTorch tuned (1 process) | - |' not in md


def test_ratios_pair_runs_of_the_same_round():
    runs = [{'config': 'a', 'round': 1, 'samples_per_s': 10.0},
            {'config': 'b', 'round': 1, 'samples_per_s': 5.0},
            {'config': 'a', 'round': 2, 'samples_per_s': 30.0},
            {'config': 'b', 'round': 2, 'error': 'rc 1'},
            {'config': 'b', 'round': 3, 'samples_per_s': 1.0}]
    assert summary.round_ratios(runs, 'a', 'b') == [2.0]


def run(cfg, rnd, sps=1.0, wall=1.0, rss=(100.0,)):
    return {'config': cfg.name, 'round': rnd, 'samples_per_s': sps, 'wall_s': wall,
            'rss_mb': list(rss)}


def test_best_of_takes_each_rounds_fastest_and_at_most_targets():
    a, b = C.TWO_WORKER_LAYOUTS[:2]
    runs = [run(C.LOCAL, 1, 100, wall=4), run(a, 1, 90), run(b, 1, 50),
            run(C.LOCAL, 2, 100, wall=6), run(a, 2, 10), run(b, 2, 70)]
    best = next(t for t in C.TARGETS if t.key == 'best-2-worker')
    out = summary.evaluate(best, runs)
    assert out.per_round == [(0.9, a.name), (0.7, b.name)] and out.value == pytest.approx(0.8)
    assert out.met is False
    assert summary.evaluate(C.LOCAL_WALL, runs).value == 5.0
    assert summary.evaluate(C.LOCAL_WALL, runs).met is True  # at most 5 s
    rss = next(t for t in C.TARGETS if t.key == 'peak-rss')
    assert summary.evaluate(rss, [run(C.LOCAL, 1, rss=(120, 310))]).met is False
    assert summary.evaluate(best, [run(C.LOCAL, 1)]).measured is False


def test_every_why_section_is_a_target_and_misses_quote_it():
    keys = {t.key for t in C.TARGETS}
    sections = report.why_sections()
    assert sections and set(sections) <= keys
    missed = summary.Outcome(C.LOCAL_WALL, [(9.0, 'local')], 9.0, False)
    assert sections['local-wall'] in report.why([missed])
    other = summary.Outcome(C.TARGETS[2], [(0.1, 'x')], 0.1, False)
    assert 'not analysed yet' in report.why([other], sections={})


def test_configs_and_thresholds_are_named_once():
    assert len({c.name for c in C.CONFIGS}) == len(C.CONFIGS)
    assert len({t.key for t in C.TARGETS + C.PEERS}) == len(C.TARGETS + C.PEERS)
    for t in C.TARGETS:
        assert f'{t.want:g}' in t.describe() and all(c in C.CONFIGS for c in t.configs())


def test_unknown_config_or_torch_without_interpreter_is_refused():
    r = bench('--only', 'local,nope', timeout=60)
    assert r.returncode == 2 and 'nope' in r.stderr
    r = bench('--only', C.TORCH_TUNED.name, timeout=60)
    assert r.returncode == 2 and '--torch' in r.stderr


def test_accuracy_smoke(tmp_path):
    r = subprocess.run([sys.executable, ACCURACY, '--synthetic', '600', '--seeds', '0-1',
                        '--runs', '1' if os.path.isdir(ANCHORS) else '0', '--epochs', '1',
                        '--out', str(tmp_path)],
                       cwd=ROOT, env=harness.launch_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    raw = json.loads((tmp_path / 'accuracy.json').read_text())
    assert [x['seed'] for x in raw['distsoftmax']['runs']] == [0, 1]
    assert raw['distsoftmax']['stats']['n'] == 2 and 'synthetic' in raw['verdict']
    md = (tmp_path / 'ACCURACY.md').read_text()
    assert 'distsoftmax, seeds 0,1 | 2 |' in md and 'textbook' in md
    assert 'distsoftmax seed 0:' in r.stdout and 'mean' in r.stdout


def test_harness_launcher_argv():
    hvd = harness.horovodrun_argv(2, '/py', ['-m', 'x'], prefix=['/usr/bin/time'])
    assert hvd[1:] == ['-np', '2', '--gloo', '/usr/bin/time', '/py', '-m', 'x']
    mpi = harness.horovodrun_argv(4, '/py', [], transport='--mpi')
    assert '--mpi' in mpi and '--mpi-args=--allow-run-as-root --oversubscribe' in mpi
    assert harness.horovodrun_argv(1, '/py', [], transport=None)[1:] == ['-np', '1', '/py']
    m = harness.mpirun_argv(2, '/py', ['a'], env_names=('PATH',))
    assert m == ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', '2', '-x', 'PATH',
                 '/py', 'a']
    t = harness.torchrun_argv(2, '/tp', ['s.py', 'D'], prefix=['time'])
    assert t[:2] == ['/tp', '-m'] and '--nproc_per_node=2' in t
    assert t[t.index('--no-python') + 1:] == ['time', '/tp', 's.py', 'D']


def test_harness_writes_idx_files_the_package_reads(tmp_path):
    from distsoftmax import data
    d = data.synthetic(seed=3, n_train=60, n_test=20)
    harness.write_idx_dir(tmp_path / 'idx', d)
    back = data.load(str(tmp_path / 'idx'), verify=False, download=False)
    assert (back.train_images == d.train_images).all() and (back.test_labels == d.test_labels).all()
    with gzip.open(tmp_path / 'idx' / 'train-images-idx3-ubyte.gz') as f:
        assert f.read(16)[8:] == (28).to_bytes(4, 'big') * 2


def test_all_sh_passes_shellcheck():
    if not shutil.which('shellcheck'):
        pytest.skip('shellcheck not installed (apt-get install shellcheck)')
    p = subprocess.run(['shellcheck', '--shell=bash', os.path.join(ROOT, 'bench', 'all.sh')],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
