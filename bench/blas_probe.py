"""Run an anchor script and record, from inside its process, which BLAS kernel ran.

usage: python bench/blas_probe.py INFO_JSON SCRIPT [ARGS...]

Imports numpy (which loads its bundled OpenBLAS and lets OpenBLAS pick its
kernel from the CPU and OPENBLAS_CORETYPE), records the kernel with threadpoolctl
(or, where it is not installed, by asking the loaded libopenblas directly, as
threadpoolctl does), then runs SCRIPT as __main__ with ARGS, unchanged. INFO_JSON
gets the kernel, every OPENBLAS_* variable in force, and the process CPU time
between the script's first and last time.perf_counter() call: the anchors time
their training with exactly those two calls, so that is the CPU time of the part
they report samples/s for.
"""
import ctypes
import json
import os
import re
import runpy
import sys
import time


def openblas_env():
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith('OPENBLAS')}


def via_threadpoolctl():
    import threadpoolctl
    return [{'library': i.get('internal_api'), 'version': i.get('version'),
             'architecture': i.get('architecture'), 'threads': i.get('num_threads'),
             'threading_layer': i.get('threading_layer'), 'path': i.get('filepath')}
            for i in threadpoolctl.threadpool_info() if i.get('user_api') == 'blas']


def via_ctypes():
    """The loaded libopenblas*'s own openblas_get_corename/config (64_ suffix too)."""
    with open('/proc/self/maps') as f:
        paths = sorted(set(re.findall(r'(/\S*openblas\S*\.so\S*)', f.read())))
    out = []
    for path in paths:
        lib = ctypes.CDLL(path)
        for suffix in ('', '64_'):
            core = getattr(lib, 'openblas_get_corename' + suffix, None)
            if core is None:
                continue
            core.restype = ctypes.c_char_p
            config = getattr(lib, 'openblas_get_config' + suffix)
            config.restype = ctypes.c_char_p
            threads = getattr(lib, 'openblas_get_num_threads' + suffix)
            text = config().decode()
            version = re.search(r'OpenBLAS (\S+)', text)
            out.append({'library': 'openblas', 'version': version and version.group(1),
                        'architecture': core().decode(), 'threads': threads(),
                        'threading_layer': None, 'path': path, 'config': text})
            break
    return out


def blas_info():
    import numpy  # noqa: F401  (loads the bundled OpenBLAS; the kernel is chosen now)
    try:
        libs, how = via_threadpoolctl(), 'threadpoolctl'
    except ImportError:
        libs, how = via_ctypes(), 'libopenblas (threadpoolctl not installed)'
    return {'blas': libs, 'kernel': ', '.join(str(b['architecture']) for b in libs) or 'none found',
            'read_by': how, 'openblas_env': openblas_env(), 'numpy': numpy.__version__,
            'omp_num_threads': os.environ.get('OMP_NUM_THREADS')}


def main():
    info_path, script, *args = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))   # as `python SCRIPT` would have it
    info = blas_info()
    stamps = []
    real = time.perf_counter

    def perf_counter():
        stamps.append(time.process_time())
        return real()

    time.perf_counter = perf_counter
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        time.perf_counter = real
        if len(stamps) >= 2:
            info['train_cpu_s'] = stamps[-1] - stamps[0]
        with open(info_path, 'w') as f:
            json.dump(info, f)


if __name__ == '__main__':
    main()
