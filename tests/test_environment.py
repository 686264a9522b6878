"""`distsoftmax env`: what this machine gives a run, and the GPU architecture rule."""
import json

import pytest

from distsoftmax import environment
from distsoftmax.errors import LayoutError
from harness import REAL, horovod_available, run_cli


def test_env_names_the_build_horovod_mpi_and_the_data():
    r = run_cli('env')
    assert r.returncode == 0, r.stderr
    assert 'mxnet: mxnet 1.9.1, CPU build' in r.stdout
    if horovod_available():
        assert 'horovod 0.28.1: MXNet, MPI, Gloo' in r.stdout
    assert 'MPI: Open MPI v4' in r.stdout and 'mpirun /' in r.stdout
    if REAL:
        assert f'data: {REAL}' in r.stdout
    assert '--layout auto picks local' in r.stdout and 'OMP_NUM_THREADS=' in r.stdout
    j = json.loads(run_cli('env', '--json').stdout)
    assert j['mxnet']['cuda'] is False and j['auto_layout']['layout'] == 'local' and j['world_size'] == 1


def test_a_gpu_the_wheel_has_no_kernels_for_is_refused_naming_both():
    build = {'distribution': 'mxnet-cu112', 'version': '1.9.1', 'cuda': True, 'gpu_archs': [50, 60, 70, 80, 86]}
    environment.check_gpu_arch([{'index': 0, 'name': 'NVIDIA A100', 'compute_capability': '8.0'}], build)
    with pytest.raises(LayoutError, match=r'GPU 1 \(NVIDIA H200\) is sm_90, but mxnet-cu112 1\.9\.1 holds kernels '
                                          r'for sm_50, sm_60, sm_70, sm_80, sm_86 only and no PTX'):
        environment.check_gpu_arch([{'index': 1, 'name': 'NVIDIA H200', 'compute_capability': '9.0'}], build)


def test_a_gpu_on_a_cpu_build_says_it_is_a_cpu_build():
    r = run_cli('--devices', 'gpu:0', '--synthetic', '600', '--epochs', '1')
    assert r.returncode == 2
    assert r.stderr == ('distsoftmax: error: --devices gpu:0: no GPU found (mxnet 1.9.1 is a CPU build: install '
                        'mxnet-cu112==1.9.1 for GPUs); use --devices cpu\n')
