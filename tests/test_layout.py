"""Every layout follows the single-process run step for step (to float rounding).

These launch the real horovodrun and mpirun on this machine's CPU.
"""
import json

import numpy as np
import pytest

from conftest import horovodrun, load_params, mpirun, needs_horovod, probe, run_cli
from distsoftmax import layout
from distsoftmax.errors import UserError

ONE_STEP = ['--synthetic', '256', '--batch-size', '256', '--epochs', '1']
ONE_EPOCH = ['--synthetic', '6000', '--batch-size', '256', '--epochs', '1']   # tail 112


def _run(how, flags, out):
    args = [*flags, '--quiet', '--checkpoint-dir', out / 'ckpt', '--metrics', out / 'm.jsonl']
    if how == 'local':
        r = run_cli(*args)
    elif how == 'cpu:2':
        r = run_cli(*args, '--devices', 'cpu:2')
    elif how.startswith('horovod'):
        _, np_, transport = how.split('-')
        r = horovodrun(int(np_), *args, transport='--' + transport)
    else:
        r = mpirun(2, *args, '--backend', 'mpi')
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [json.loads(line) for line in open(out / 'm.jsonl')]
    return load_params(out / 'ckpt' / 'model.params'), lines


LAYOUTS = ['cpu:2',
           pytest.param('horovod-2-gloo', marks=needs_horovod),
           pytest.param('horovod-4-gloo', marks=needs_horovod),
           pytest.param('horovod-2-mpi', marks=needs_horovod),
           pytest.param('horovod-4-mpi', marks=needs_horovod),
           'mpi4py-2']
EXPECTED = {'cpu:2': ('devices', 1, 2), 'horovod-2-gloo': ('horovod', 2, 1),
            'horovod-4-gloo': ('horovod', 4, 1), 'horovod-2-mpi': ('horovod', 2, 1),
            'horovod-4-mpi': ('horovod', 4, 1), 'mpi4py-2': ('mpi', 2, 1)}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    out = {}
    for name, flags in (('step', ONE_STEP), ('epoch', ONE_EPOCH)):
        d = tmp_path_factory.mktemp('local-' + name)
        out[name] = _run('local', flags, d)
    return out


@pytest.mark.launcher
@pytest.mark.parametrize('how', LAYOUTS)
@pytest.mark.parametrize('when', ['step', 'epoch'])
def test_layout_tracks_single_process(how, when, reference, tmp_path):
    params, metrics = _run(how, ONE_STEP if when == 'step' else ONE_EPOCH, tmp_path)
    ref_params, ref_metrics = reference[when]
    for k in ref_params:
        np.testing.assert_allclose(params[k], ref_params[k], rtol=0, atol=1e-5)
        assert not np.array_equal(ref_params[k], 0)
    summary = metrics[-1]
    assert (summary['layout'], summary['world_size'], summary['devices']) == EXPECTED[how]
    assert summary['replicas_identical'] is True          # every rank and device holds the same
    assert summary['test_acc'] == ref_metrics[-1]['test_acc']
    assert metrics[0]['train_acc'] == pytest.approx(ref_metrics[0]['train_acc'], abs=1e-12)
    assert metrics[0]['train_loss'] == pytest.approx(ref_metrics[0]['train_loss'], rel=1e-5)


def test_parse_devices():
    import mxnet as mx
    assert layout.parse_devices('cpu') == [mx.cpu(0)]
    assert layout.parse_devices('cpu:3') == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    for bad in ('tpu', 'cpu:0', 'cpu:x', 'gpu:a', ''):
        with pytest.raises(UserError, match='--devices'):
            layout.parse_devices(bad)
    if layout.num_gpus() == 0:
        with pytest.raises(UserError, match='no GPU found'):
            layout.parse_devices('gpu:0')


def test_choose_backend(monkeypatch):
    for k in ('HOROVOD_RANK', 'HOROVOD_HOSTNAME', 'OMPI_COMM_WORLD_SIZE', 'PMI_SIZE',
              'MPI_LOCALNRANKS', 'PMIX_SIZE', 'SLURM_STEP_NUM_TASKS'):
        monkeypatch.delenv(k, raising=False)
    assert layout.choose_backend('auto', None) == 'local'
    assert layout.choose_backend('auto', 'cpu:2') == 'devices'
    assert layout.choose_backend('auto', 'gpu:0,1') == 'devices'
    assert layout.choose_backend('mpi', None) == 'mpi'
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '4')
    monkeypatch.setattr(layout, 'horovod_built', lambda: False)
    assert layout.choose_backend('auto', None) == 'mpi'
    monkeypatch.setattr(layout, 'horovod_built', lambda: True)
    assert layout.choose_backend('auto', None) == 'horovod'
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '1')
    assert layout.choose_backend('auto', None) == 'local'
    monkeypatch.delenv('OMPI_COMM_WORLD_SIZE')
    monkeypatch.setenv('SLURM_STEP_NUM_TASKS', '8')   # srun
    assert layout.choose_backend('auto', None) == 'horovod'
    monkeypatch.delenv('SLURM_STEP_NUM_TASKS')
    monkeypatch.setenv('HOROVOD_RANK', '0')
    assert layout.choose_backend('auto', None) == 'horovod'


@pytest.mark.launcher
@needs_horovod
def test_several_devices_per_horovod_process_is_refused():
    r = horovodrun(2, '--synthetic', '512', '--devices', 'cpu:2', '--quiet')
    assert r.returncode != 0
    assert 'one device per process' in r.stdout + r.stderr
    # horovodrun prints its own traceback when a worker fails; ours print one line
    assert 'distsoftmax/' not in r.stdout + r.stderr


def test_one_host_from_the_launchers_environment(monkeypatch):
    for k in ('HOROVOD_SIZE', 'HOROVOD_LOCAL_SIZE', 'OMPI_COMM_WORLD_SIZE',
              'OMPI_COMM_WORLD_LOCAL_SIZE', 'PMI_SIZE', 'MPI_LOCALNRANKS', 'PMIX_SIZE',
              'SLURM_STEP_NUM_TASKS'):
        monkeypatch.delenv(k, raising=False)
    assert layout.one_host()                                  # a lone process
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '4')
    monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_SIZE', '2')
    assert not layout.one_host()                              # mpirun over 2 hosts
    monkeypatch.setenv('HOROVOD_SIZE', '4')
    monkeypatch.setenv('HOROVOD_LOCAL_SIZE', '4')
    assert layout.one_host()                                  # horovodrun, one host
    monkeypatch.delenv('HOROVOD_SIZE')
    monkeypatch.delenv('HOROVOD_LOCAL_SIZE')
    monkeypatch.delenv('OMPI_COMM_WORLD_LOCAL_SIZE')
    assert not layout.one_host()                              # 4 ranks, no word on where


HOROVOD_ENV = ("import os; from distsoftmax import layout; l = layout.make('horovod', 'cpu'); "
               "print(os.environ['HOROVOD_CYCLE_TIME'], os.environ['OMPI_MCA_mpi_yield_when_idle']); "
               "l.close()")


@needs_horovod
def test_horovod_tuned_for_millisecond_steps_unless_told_otherwise():
    assert probe(HOROVOD_ENV)[-2:] == ['0.1', '1']
    assert probe(HOROVOD_ENV, HOROVOD_CYCLE_TIME='2',
                 OMPI_MCA_mpi_yield_when_idle='0')[-2:] == ['2', '0']
