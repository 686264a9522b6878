"""bench/ end to end on small synthetic sets, its arithmetic, and tests/harness.py.

Not a speed test: the numbers of a 2000-sample epoch say nothing, and nothing
here is timed. The PyTorch rows run only where DISTSOFTMAX_BENCH_TORCH names an
interpreter with torch; the C floor's only where a C compiler and
../shared/anchors/c_floor.c are there.
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
from bench import blas_probe, measure, native, report, summary  # noqa: E402
from bench import configs as C  # noqa: E402
from bench import stepprofile as SP  # noqa: E402

BENCH = os.path.join(ROOT, 'bench', 'run.py')
ACCURACY = os.path.join(ROOT, 'bench', 'accuracy.py')
ANCHORS = os.path.join(os.path.dirname(ROOT), 'shared', 'anchors')
TORCH = os.environ.get('DISTSOFTMAX_BENCH_TORCH')
needs_gnu_time = pytest.mark.skipif(not os.access('/usr/bin/time', os.X_OK),
                                    reason='GNU time not installed')
HAS_C_FLOOR = (bool(shutil.which(native.CC)) and native.C_FLOOR_SRC.is_file()
               and native.has_header('zlib.h'))
needs_cc = pytest.mark.skipif(not shutil.which(native.CC), reason='no C compiler')


def bench(*args, timeout=600):
    return subprocess.run([sys.executable, BENCH, *args], cwd=ROOT, env=harness.launch_env(),
                          capture_output=True, text=True, timeout=timeout)


def smoke(out, configs, *extra):
    """One round, one epoch on 2000 synthetic samples; no profile or growth phase
    unless EXTRA asks."""
    if '--growth' not in extra:
        extra += ('--growth', 'none')
    if '--profile' in extra:
        extra = tuple(a for a in extra if a != '--profile')
    else:
        extra += ('--no-profile',)
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
        # the whole process tree's CPU time, and samples per CPU-second from it
        assert run['cpu_s'] > 0 and run['samples_per_cpu_s'] > 0 and run['cores_busy'] > 0
    return (out / 'RESULTS.md').read_text(), raw


@needs_gnu_time
def test_smoke_writes_table_plot_and_raw_runs(tmp_path):
    """The main smoke run: every launcher path, both floors, the bound, the BLAS
    kernel, the profile and the growth phase, in one bench invocation."""
    configs = [C.LOCAL.name]
    if os.path.isfile(os.path.join(ANCHORS, 'numpy_floor.py')):
        configs.append(C.NUMPY_FLOOR.name)  # an anchor, on the same synthetic IDX files
    if HAS_C_FLOOR:
        configs.append(C.C_FLOOR.name)
    if harness.horovod_available() and shutil.which('mpirun'):
        # one run through each launcher path: horovodrun --gloo, plain mpirun
        configs += [C.HOROVOD_NP2_GLOO.name, C.MPI_NP2.name]
    md, raw = smoke(tmp_path, configs, '--profile', '--growth', '2000,3000')
    for name in configs:
        assert f'| {name} |' in md
    for target in C.TARGETS:
        assert f'| {target.describe()} |' in md
    assert f"{raw['machine']['cpu']}, {raw['machine']['cores']} cores" in md
    assert 'repeat(s)' in md and 'mxnet 1.9.1' in md
    assert 'no --torch PYTHON given' in md and 'Skipped: no `--torch PYTHON`' in md
    assert (tmp_path / 'scaling.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    runs = {r['config']: r for r in raw['runs']}
    f = raw['figures']
    # the bound: a row of the table, from the measured peak and the derived FLOP
    if shutil.which(native.CC):
        assert f['peak_gflops'] > 0 and raw['phases']['peak'][0]['round'] == 1
        assert f['job_gflop'] == pytest.approx(native.flops(2000, f['n_test'], 1)['total'] / 1e9)
        assert '| bound | arithmetic bound:' in md and '## The limit' in md
        assert f['bound_sps'] == pytest.approx(2000 / (f['job_gflop'] / f['peak_gflops']))
    if C.C_FLOOR.name in runs:
        c = runs[C.C_FLOOR.name]
        assert c['train_cpu_s'] > 0 and c['samples_per_train_cpu_s'] > 0
        assert raw['machine']['native']['c_floor']['mode'] in ('avx512', 'blas', 'naive')
        assert f"the C floor: mode {raw['machine']['native']['c_floor']['mode']}" in md
    if C.NUMPY_FLOOR.name in runs:
        blas = runs[C.NUMPY_FLOOR.name]['blas']
        assert blas['kernel'] and blas['omp_num_threads'] == '1'
        assert f"numpy floor's BLAS kernel: {blas['kernel']}" in md
        assert f"| {C.NUMPY_FLOOR.name} | {blas['kernel']} |" in md
        assert runs[C.NUMPY_FLOOR.name]['train_cpu_s'] > 0
    # the profile: dispatch and engine per step, the top operators
    assert f['b256_dispatch_us'] > 0 and f['b256_steps'] > 0 and f['naive_cpu_us'] > 0
    assert f['top_operators'] and f['ops_per_step'] > 0 and f['ceiling_2w'] > 0
    assert '## Per-step profile' in md and '| batch 256 |' in md
    # growth: the tiled sizes, and the context limit
    assert [g['n_train'] for g in raw['phases']['growth']] == [2000, 3000]
    assert all('error' not in g and max(g['rss_mb']) > 0 for g in raw['phases']['growth'])
    assert '| 3,000 |' in md and '2,739,137 training samples' in md
    # the load average of every round
    assert '## Rounds' in md and '| 1 |' in md.split('## Rounds')[1]


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
    figures = {'wall_local': 9.0, 'import_mxnet_s': 2.5}
    quoted = report.why([missed], figures=figures)
    assert report.fill(sections['local-wall'], figures) in quoted and '9.00 s in all' in quoted
    other = summary.Outcome(C.TARGETS[2], [(0.1, 'x')], 0.1, False)
    assert 'not analysed yet' in report.why([other], sections={})


def test_fill_formats_figures_and_says_what_was_not_measured():
    f = {'a': 0.1234, 'b': 366754.2, 'c': None, 'k': 'Haswell'}
    assert report.fill('{a:.0%} {b} {c} {k} {d}', f) == \
        f'12% 366,754 {report.MISSING} Haswell {report.MISSING}'
    assert report.fill('{k:.2f}', f) == 'Haswell'   # a format that does not fit: as it is


def fake_full_run():
    """One round of every configuration and every phase, with plausible numbers:
    what a complete bench/all.sh run gives derive()."""
    runs = []
    for i, cfg in enumerate(C.CONFIGS):
        run = {'config': cfg.name, 'round': 1, 'samples_per_s': 1e5 + i, 'wall_s': 3.0 + i,
               'rss_mb': [200.0 + i] * cfg.workers, 'test_acc': 0.82, 'cpu_s': 4.0,
               'samples_per_cpu_s': 7.5e4, 'cores_busy': 1.3, 'load1_before': 0.5,
               'other_cpu_s': 0.0}
        if cfg.kind == C.NATIVE or cfg.blas_probe:
            run.update(train_cpu_s=0.1, samples_per_train_cpu_s=3e6)
        if cfg.blas_probe:
            run['blas'] = {'kernel': 'Haswell', 'blas': [], 'openblas_env': {}, 'read_by': 'x'}
        runs.append(run)

    def record(steps=10):
        part = {'calls': steps, 'cpu_s': 0.001, 'wall_s': 0.001}
        epoch = {'wall_s': 0.01, 'cpu_s': 0.012, 'main_cpu_s': 0.005, 'steps': steps,
                 'forward': part, 'backward': part, 'trainer_step': part, 'profiled': True}
        return {'epochs': [epoch, epoch], 'libmxnet_rss_mb': 120.0,
                'operators': {'FullyConnected': {'Count': 10, 'Total': 1.0},
                              '_backward_FullyConnected': {'Count': 10, 'Total': 0.5},
                              'Cast': {'Count': 10, 'Total': 0.3}}}
    profile = {'round': 1, 'load1_before': 0.5, 'import_mxnet_s': 1.9,
               'runs': [{'profile': name, 'record': record()} for name, *_ in SP.PROFILE_RUNS],
               'c_floor': {'gather_us': 10.0, 'forward_us': 20.0, 'softmax_us': 5.0,
                           'backward_us': 20.0, 'steps': 235, 'mode': 'avx512'}}
    phases = {'peak': [{'round': 1, 'gflops': 248.0, 'gflops_per_cpu_s': 248.0,
                        'read_gb_s': 30.0, 'vector_bits': 512}],
              'profile': [profile],
              'growth': [{'round': 1, 'n_train': n, 'epochs': 2, 'samples_per_s': 3e5,
                          'samples_per_cpu_s': 2e5, 'rss_mb': [300.0], 'wall_s': 5.0}
                         for n in SP.GROWTH]}
    info = {'native': {'c_floor': {'mode': 'avx512'}}, 'mxnet_features': ['MKLDNN']}
    data = {'n_train': 60000, 'n_test': 10000}
    return runs, phases, info, data


def test_every_figure_why_md_quotes_is_one_a_full_run_derives():
    runs, phases, info, data = fake_full_run()
    figures = report.derive(runs, C.CONFIGS, data, 5, phases, info)
    for key, body in report.why_sections().items():
        unknown = report.placeholders(body) - {k for k, v in figures.items() if v is not None}
        assert not unknown, f'WHY.md section {key} quotes figures no run derives: {unknown}'
        assert report.MISSING not in report.fill(body, figures)
    # the job's arithmetic, as issue 27 states it
    assert figures['step_mflop'] == pytest.approx(8.03, abs=0.01)
    assert figures['job_gflop'] == pytest.approx(10.19, abs=0.01)
    assert figures['bound_sps'] == pytest.approx(7.3e6, rel=0.01)
    assert figures['kernel_numpy_floor'] == 'Haswell'


def test_job_flops_bound_and_context_limit_are_derived():
    f = native.flops(60000, 10000, 5)
    assert f['per_step'] == 256 * 2 * 2 * 784 * 10 == 8_028_160
    assert f['total'] == 5 * (60000 * 31360 + 10000 * 15680) == 10_192_000_000
    assert native.bound(f['total'], 300000, 248) == pytest.approx(300000 / (10.192 / 248))
    lim = SP.context_limit()
    assert lim['max_samples_per_context'] == (2 ** 31 - 1) // 784 == 2_739_137


def test_configs_and_thresholds_are_named_once():
    assert len({c.name for c in C.CONFIGS}) == len(C.CONFIGS)
    every = C.TARGETS + C.PEERS + C.LIMITS
    assert len({t.key for t in every}) == len(every)
    for t in C.TARGETS:
        assert f'{t.want:g}' in t.describe() and all(c in C.CONFIGS for c in t.configs())
    assert all(c in C.CONFIGS for t in C.LIMITS for c in t.configs())


def test_numpy_floor_unset_runs_only_where_the_environment_sets_what_it_unsets():
    names = [c.name for c in C.default_configs(environ={})]
    assert C.NUMPY_FLOOR.name in names and C.NUMPY_FLOOR_UNSET.name not in names
    assert C.C_FLOOR.name in names and C.TORCH_TUNED.name not in names
    names = [c.name for c in C.default_configs(environ={'OPENBLAS_CORETYPE': 'Haswell'})]
    assert C.NUMPY_FLOOR_UNSET.name in names
    env = measure.config_env(C.NUMPY_FLOOR_UNSET, '/pkg')
    assert not set(C.OPENBLAS_VARS) & set(env)   # for that command alone: os.environ untouched


@needs_cc
def test_c_floor_builds_in_the_fastest_mode_and_trains_one_epoch(tmp_path):
    if not HAS_C_FLOOR:
        pytest.skip(f'{native.C_FLOOR_SRC} or zlib.h (zlib1g-dev) not here')
    built = native.build_c_floor(tmp_path / 'bin')
    assert 'error' not in built, built['error']
    if 'avx512f' in native.cpu_flags() and '__AVX512F__' in native.native_macros():
        assert built['mode'] == 'avx512'
    else:
        assert built['mode'] in ('blas', 'naive')
    assert '-march=native' in built['command'] and '-O3' in built['command']
    from distsoftmax import data
    harness.write_idx_dir(tmp_path / 'idx', data.synthetic(seed=1, n_train=1000, n_test=200))
    r = subprocess.run([built['binary'], built['mode'], '1', str(tmp_path / 'idx')],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out['epochs'] == 1 and 0 <= out['test_acc'] <= 1 and out['cpu_s'] > 0


@needs_cc
def test_peak_probe_builds_and_reports_gflops(tmp_path):
    built = native.build_peak(tmp_path)
    assert 'error' not in built, built['error']
    p = native.measure_peak(built['binary'], iters=200_000, megabytes=8)
    assert p['gflops'] > 0 and p['gflops_per_cpu_s'] > 0 and p['read_gb_s'] > 0
    assert p['vector_bits'] in (128, 256, 512)


def test_blas_probe_names_the_kernel_numpy_loaded():
    import numpy  # noqa: F401
    libs = blas_probe.via_ctypes()   # what threadpoolctl reads, without it
    assert libs and all(b['architecture'] for b in libs)
    info = blas_probe.blas_info()
    assert info['kernel'] and isinstance(info['openblas_env'], dict)


def test_growth_tiles_the_training_set(tmp_path):
    from distsoftmax import data
    d = data.synthetic(seed=2, n_train=300, n_test=50)
    harness.write_idx_dir(tmp_path / 'src', d)
    dirs = SP.tiled_data(tmp_path / 'src', [300, 750], tmp_path / 'tiled')
    assert dirs[300] == str(tmp_path / 'src')   # the source itself: nothing written
    back = data.load(dirs[750], verify=False, download=False)
    assert len(back.train_labels) == 750 and len(back.test_labels) == 50
    assert (back.train_images[300:600] == d.train_images).all()
    assert (back.train_labels[600:] == d.train_labels[:150]).all()


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
