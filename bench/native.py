"""The physical limit, built at run time: the C floor and the machine's fp32 peak.

- The C floor: ../shared/anchors/c_floor.c (the same training in C, one thread),
  compiled here with `cc -O3 -march=native -ffast-math -DPF=8` in the fastest mode
  this CPU and compiler support: `avx512` (hand AVX-512 kernels) where the CPU
  has AVX-512F and -march=native targets it, else `blas` (cblas_sgemm) where
  OpenBLAS's headers and library are installed, else `naive` (plain loops).
- The peak: bench/peak.c, a short FMA loop compiled the same way, run on one
  core: its GFLOP/s per wall and per CPU second, and one core's read bandwidth.
- The bound: the job's FLOP count (flops()) at that peak.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
C_FLOOR_SRC = HERE.parent.parent / 'shared' / 'anchors' / 'c_floor.c'
PEAK_SRC = HERE / 'peak.c'
CC = os.environ.get('CC', 'cc')
C_FLOOR_FLAGS = ('-O3', '-march=native', '-ffast-math', '-DPF=8')
PEAK_FLAGS = ('-O3', '-march=native', '-ffp-contract=fast')

D, K, BATCH = 784, 10, 256   # inputs, classes, global batch: the job's shape


def flops(n_train, n_test, epochs):
    """The job's arithmetic, FLOP (a multiply-add is 2): per training sample the
    forward product x W (2*D*K) and the weight gradient x^T p (2*D*K); no input
    gradient is needed; per test sample the forward product, every epoch. The
    bias, softmax and update terms (O(K) a sample, O(D*K) a step) are left out:
    under 1%."""
    per_train, per_test = 2 * (2 * D * K), 2 * D * K
    return {'per_train_sample': per_train, 'per_test_sample': per_test,
            'per_step': BATCH * per_train,
            'total': epochs * (n_train * per_train + n_test * per_test),
            'formula': f'{epochs} epochs x ({n_train} x 2 x 2 x {D} x {K} + '
                       f'{n_test} x 2 x {D} x {K})'}


def bytes_streamed(n_train, n_test, epochs):
    """The uint8 pixels every epoch reads once: training and test rows."""
    return epochs * (n_train + n_test) * D


def cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def native_macros(cc=CC):
    """The macros `cc -march=native` predefines (empty if there is no compiler)."""
    try:
        r = subprocess.run([cc, '-march=native', '-dM', '-E', '-x', 'c', os.devnull],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[1] for line in r.stdout.splitlines() if line.startswith('#define ')}


def compiler_version(cc=CC):
    try:
        return subprocess.run([cc, '--version'], capture_output=True, text=True,
                              timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


def has_header(name, cc=CC):
    """Whether the compiler finds <NAME> (zlib.h: zlib1g-dev; cblas.h: libopenblas-dev)."""
    try:
        r = subprocess.run([cc, '-E', '-x', 'c', '-'], input=f'#include <{name}>\n',
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _compile(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr or r.stdout)[-1500:]


def choose_mode(flags=None, macros=None):
    """avx512 where the CPU has it and -march=native targets it; else None (the
    caller tries blas, then naive)."""
    flags = cpu_flags() if flags is None else flags
    macros = native_macros() if macros is None else macros
    return 'avx512' if 'avx512f' in flags and '__AVX512F__' in macros else None


def build_c_floor(where, src=C_FLOOR_SRC, mode=None):
    """Compile the C floor into WHERE. Returns {'binary', 'mode', 'command',
    'compiler'} or {'error'}: the fastest mode that builds (see the module doc);
    MODE forces one."""
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    if not Path(src).is_file():
        return {'error': f'{src} not found'}
    if not shutil.which(CC):
        return {'error': f'no C compiler ({CC}): apt-get install build-essential'}
    if not has_header('zlib.h'):
        return {'error': 'zlib.h not found (the C floor reads the gz files): apt-get install zlib1g-dev'}
    binary = where / 'c_floor'
    tried = [mode] if mode else [m for m in (choose_mode(), 'blas' if has_header('cblas.h') else None,
                                             'naive') if m]
    errors = []
    for m in tried:
        extra = ('-DWITH_BLAS',) if m == 'blas' else ()
        libs = ('-lopenblas',) if m == 'blas' else ()
        argv = [CC, *C_FLOOR_FLAGS, *extra, str(src), '-o', str(binary), '-lz', '-lm', *libs]
        err = _compile(argv)
        if err is None:
            return {'binary': str(binary), 'mode': m, 'command': ' '.join(argv),
                    'compiler': compiler_version(), 'avx512': 'avx512f' in cpu_flags()}
        errors.append(f'{m}: {err.strip().splitlines()[-1] if err.strip() else err}')
    return {'error': 'the C floor did not build: ' + '; '.join(errors)}


def build_peak(where, src=PEAK_SRC):
    """Compile bench/peak.c into WHERE: {'binary', 'command'} or {'error'}."""
    binary = Path(where) / 'peak'
    Path(where).mkdir(parents=True, exist_ok=True)
    if not shutil.which(CC):
        return {'error': f'no C compiler ({CC})'}
    argv = [CC, *PEAK_FLAGS, str(src), '-o', str(binary)]
    err = _compile(argv)
    return {'error': 'peak.c did not build: ' + err} if err else {'binary': str(binary),
                                                                  'command': ' '.join(argv)}


def measure_peak(binary, iters=20_000_000, megabytes=128, timeout=120):
    """One run of the peak probe: {'gflops', 'gflops_per_cpu_s', 'read_gb_s', ...}
    or {'error'}."""
    try:
        r = subprocess.run([str(binary), str(iters), str(megabytes)], capture_output=True,
                           text=True, timeout=timeout)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {'error': f'peak probe failed: {e}'}


def bound(job_flops, n_samples, gflops):
    """Samples/s at GFLOPS for the job's arithmetic (every sample of every epoch
    over the time the FLOP take at the peak)."""
    return n_samples / (job_flops / (gflops * 1e9))
