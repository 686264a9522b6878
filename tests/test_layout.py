"""Every layout follows the single-process run step for step (to float rounding).

These launch the real horovodrun and mpirun on this machine's CPU.
"""
import json

import numpy as np
import pytest

from harness import horovodrun, load_params, mpirun, needs_horovod, probe, run_cli
from distsoftmax import config, launchers, layout
from distsoftmax.errors import UsageError

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
        r = mpirun(2, *args, '--layout', 'mpi')
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


def _clean(monkeypatch):
    for k in launchers.VARIABLES:
        monkeypatch.delenv(k, raising=False)


def test_choose_layout(monkeypatch):
    _clean(monkeypatch)
    none, two = config.Devices(), config.Devices.parse('cpu:2')
    assert layout.choose_layout('auto', none) == 'local'
    assert layout.choose_layout('auto', two) == 'devices'
    assert layout.choose_layout('auto', config.Devices.parse('gpu:0,1')) == 'devices'
    assert layout.choose_layout('mpi', none) == 'mpi'
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '4')
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '0')
    monkeypatch.setattr(layout, 'horovod_built', lambda: False)
    assert layout.choose_layout('auto', none) == 'mpi'
    monkeypatch.setattr(layout, 'horovod_built', lambda: True)
    assert layout.choose_layout('auto', none) == 'horovod'
    for name in ('local', 'devices'):   # each rank would train alone
        with pytest.raises(UsageError, match=f'--layout {name} under a launcher of 4 ranks'):
            layout.choose_layout(name, none)
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '1')
    assert layout.choose_layout('auto', none) == 'local'
    _clean(monkeypatch)
    monkeypatch.setenv('SLURM_STEP_NUM_TASKS', '8')   # srun
    monkeypatch.setenv('SLURM_PROCID', '3')
    assert layout.choose_layout('auto', none) == 'horovod' and launchers.rank() == 3
    _clean(monkeypatch)
    for key, value in (('WORLD_SIZE', '2'), ('RANK', '1'), ('LOCAL_RANK', '1'), ('LOCAL_WORLD_SIZE', '2')):
        monkeypatch.setenv(key, value)                      # torchrun: refused, said by rank 0 only
    with pytest.raises(UsageError, match='WORLD_SIZE=2 and RANK are set'):
        layout.choose_layout('auto', none)
    assert launchers.rank() == 1
    _clean(monkeypatch)
    monkeypatch.setenv('HOROVOD_HOSTNAME', 'localhost')   # horovodrun --mpi, one rank
    assert layout.choose_layout('auto', none) == 'horovod'


@pytest.mark.launcher
@needs_horovod
def test_several_devices_per_horovod_process_is_refused():
    r = horovodrun(2, '--synthetic', '512', '--devices', 'cpu:2', '--quiet')
    assert r.returncode != 0
    assert 'one device per process' in r.stdout + r.stderr
    # horovodrun prints its own traceback when a worker fails; ours print one line
    assert 'distsoftmax/' not in r.stdout + r.stderr


HOROVOD_ENV = ("import os; from distsoftmax import config, layout; "
               "from distsoftmax.session import Session; l = layout.start('horovod', config.Devices.parse('cpu'), Session(cli=True), 300); "
               "print(os.environ['HOROVOD_CYCLE_TIME'], os.environ['OMPI_MCA_mpi_yield_when_idle'], "
               "os.environ.get('OMPI_MCA_btl')); l.close()")


@needs_horovod
def test_horovod_tuned_for_millisecond_steps_unless_told_otherwise():
    assert probe(HOROVOD_ENV)[-3:] == ['0.1', '1', 'None']
    assert probe(HOROVOD_ENV, HOROVOD_CYCLE_TIME='2',
                 OMPI_MCA_mpi_yield_when_idle='0')[-3:] == ['2', '0', 'None']
    # horovodrun's "-mca btl ^openib" turned libfabric back on; a user's own choice stays
    assert probe(HOROVOD_ENV, OMPI_MCA_btl='^openib')[-1] == '^openib,ofi'
    assert probe(HOROVOD_ENV, OMPI_MCA_btl='self,vader')[-1] == 'self,vader'
