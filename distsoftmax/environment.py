"""`python -m distsoftmax env`: what this machine gives a run, and what the
package would pick, in one screen (or as JSON with --json).

The GPU rule: the pip wheels of mxnet 1.9.1 for CUDA hold compiled kernels for
sm_50, 60, 70, 80 and 86 and no PTX (cuobjdump of mxnet-cu112 and -cu117), so
a GPU of another architecture (sm_90: H100, H200) cannot run MXNet's kernels;
contexts.py refuses it at start with the line that check_gpu_arch() makes.
"""
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys

from . import __version__, data, launchers
from .errors import LayoutError

# compute capabilities (major*10 + minor) the pip wheels hold kernels for, by distribution
WHEEL_ARCHS = {name: (50, 60, 70, 80, 86) for name in
               ('mxnet-cu112', 'mxnet-cu117', 'mxnet-cu110', 'mxnet-cu101', 'mxnet-cu102')}
# defaults the package sets where the user has not (README: "Defaults")
DEFAULTS = {'OMP_NUM_THREADS': '1', 'OMPI_MCA_mpi_yield_when_idle': '1 under MPI on CPU',
            'HOROVOD_CYCLE_TIME': '0.1 under Horovod on CPU, one host',
            'OMPI_MCA_btl': '^openib,ofi under horovodrun (for its ^openib)'}


def _distribution(prefix):
    found = [d for d in importlib.metadata.distributions()
             if (d.metadata['Name'] or '').lower().startswith(prefix)]
    return (found[0].metadata['Name'], found[0].version) if found else (None, None)


def mxnet_build():
    """{'distribution', 'version', 'features' (enabled), 'cuda', 'gpu_archs' (or None: unknown)}."""
    import mxnet as mx
    name, version = _distribution('mxnet')
    features = mx.runtime.Features()
    enabled = sorted(k for k in features.keys() if features.is_enabled(k))
    return {'distribution': name, 'version': version or mx.__version__, 'features': enabled,
            'cuda': 'CUDA' in enabled, 'gpu_archs': list(WHEEL_ARCHS.get((name or '').lower(), ())) or None}


def gpus():
    """[{'index', 'name', 'compute_capability'}] from nvidia-smi, [] without one."""
    smi = shutil.which('nvidia-smi')
    if not smi:
        return []
    try:
        out = subprocess.run([smi, '--query-gpu=index,name,compute_cap', '--format=csv,noheader'],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) == 3:
            found.append({'index': int(parts[0]), 'name': parts[1], 'compute_capability': parts[2]})
    return found


def check_gpu_arch(gpu_list, build):
    """Raise LayoutError naming the GPU and the build if the installed mxnet has
    no kernels for a GPU's architecture."""
    archs = build['gpu_archs']
    if not archs:
        return
    for g in gpu_list:
        major, _, minor = g['compute_capability'].partition('.')
        cc = int(major) * 10 + int(minor or 0)
        if cc not in archs:
            raise LayoutError(
                f"GPU {g['index']} ({g['name']}) is sm_{cc}, but {build['distribution']} {build['version']} holds "
                f"kernels for sm_{', sm_'.join(map(str, archs))} only and no PTX: MXNet cannot run on it. Use an "
                f'mxnet built for sm_{cc} (from source with CUDA >= 12 and -DMXNET_CUDA_ARCH={major}.{minor or 0}), '
                'or --devices cpu')


def horovod_build():
    name, version = _distribution('horovod')
    if not name:
        return None
    try:
        import horovod.mxnet as hvd
    except Exception as e:  # built without MXNet, or a broken build
        return {'version': version, 'mxnet': False, 'error': str(e).splitlines()[0]}
    return {'version': version, 'mxnet': True, 'mpi': bool(hvd.mpi_built()), 'gloo': bool(hvd.gloo_built()),
            'nccl': bool(hvd.nccl_built()), 'cuda': bool(hvd.cuda_built())}


def mpi():
    out = {'mpirun': shutil.which('mpirun')}
    name, version = _distribution('mpi4py')
    if name:
        import mpi4py
        mpi4py.rc.initialize = mpi4py.rc.finalize = False   # a look, not a job
        from mpi4py import MPI
        # the C string's own NUL comes along: cut it, or the report is binary to grep
        out.update(mpi4py=version, library=MPI.Get_library_version().replace('\0', '').splitlines()[0].strip())
    return out


def where_data():
    try:
        return {'directory': data.locate(download=False), 'error': None}
    except data.DataError as e:
        return {'directory': None, 'error': str(e)}


def auto_layout():
    """What --layout auto picks here, and why (layout.choose_layout's rule)."""
    row = launchers.detect()
    ranks = launchers.world_size()
    if launchers.by_horovodrun():
        return 'horovod', 'started by horovodrun'
    if ranks > 1:
        from .layout import horovod_built
        return ('horovod' if horovod_built() else 'mpi'), f'{row.name} started {ranks} ranks'
    return 'local', 'one process; --layout devices takes several --devices'


def report():
    build = mxnet_build()
    layout, why = auto_layout()
    return {'distsoftmax': __version__, 'python': platform.python_version(), 'host': socket.gethostname(),
            'platform': platform.platform(), 'mxnet': build, 'gpus': gpus(), 'horovod': horovod_build(),
            'mpi': mpi(), 'data': where_data(), 'launcher': (launchers.detect() or launchers.Launcher(
                'none', '', '')).name, 'world_size': launchers.world_size(),
            'auto_layout': {'layout': layout, 'why': why},
            'defaults': {k: os.environ.get(k) for k in DEFAULTS}}


def text(r):
    m, h, p = r['mxnet'], r['horovod'], r['mpi']
    lines = [f"distsoftmax {r['distsoftmax']} on Python {r['python']}, {r['host']} ({r['platform']})",
             f"mxnet: {m['distribution']} {m['version']}, {'CUDA' if m['cuda'] else 'CPU'} build; features: "
             f"{', '.join(m['features'])}"]
    if m['cuda']:
        archs = ', '.join(f'sm_{a}' for a in m['gpu_archs']) if m['gpu_archs'] else 'unknown (not a pip wheel)'
        lines.append(f'  GPU kernels for: {archs}')
    for g in r['gpus']:
        lines.append(f"GPU {g['index']}: {g['name']}, compute capability {g['compute_capability']}")
    if not r['gpus']:
        lines.append('GPUs: none seen (no nvidia-smi, or no device)')
    if h is None:
        lines.append('horovod: not installed (./bootstrap.sh setup builds it)')
    elif not h['mxnet']:
        lines.append(f"horovod {h['version']}: without MXNet ({h['error']})")
    else:
        built = ', '.join(k.upper() if k != 'gloo' else 'Gloo' for k in ('mpi', 'gloo', 'nccl', 'cuda') if h[k])
        lines.append(f"horovod {h['version']}: MXNet, {built}")
    lines.append(f"MPI: {p.get('library', 'mpi4py not installed')}; mpi4py {p.get('mpi4py', '-')}; "
                 f"mpirun {p['mpirun'] or 'not found'}")
    d = r['data']
    lines.append(f"data: {d['directory']}" if d['directory'] else f"data: not found here ({d['error']})")
    lines.append(f"launcher: {r['launcher']}, world size {r['world_size']}; --layout auto picks "
                 f"{r['auto_layout']['layout']} ({r['auto_layout']['why']})")
    lines.append('defaults the package sets where unset: ' + '; '.join(
        f'{k}={DEFAULTS[k]} (here: {"unset" if v is None else v})' for k, v in r['defaults'].items()))
    return '\n'.join(lines)


def main(as_json=False):
    r = report()
    sys.stdout.write((json.dumps(r, indent=1) if as_json else text(r)) + '\n')
