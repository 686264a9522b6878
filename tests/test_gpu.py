"""The GPU path. It runs only where mxnet sees a GPU (an mxnet-cu* build, as in
Dockerfile.gpu's image); elsewhere every test here is skipped, and says why.
tests/gpu_check.sh runs these with a 5-epoch run on the real data."""
import json

import numpy as np
import pytest

from harness import load_params, needs_real_data, run_cli
from distsoftmax import contexts

GPUS = contexts.num_gpus()
needs_gpu = pytest.mark.skipif(GPUS == 0, reason='mxnet sees no GPU (a CPU build, or no device)')
needs_two = pytest.mark.skipif(GPUS < 2, reason='fewer than 2 GPUs')

ONE_STEP = ['--synthetic', '256', '--batch-size', '256', '--epochs', '1']
ONE_EPOCH = ['--synthetic', '6000', '--batch-size', '256', '--epochs', '1']


def _train(out, devices, flags):
    r = run_cli(*flags, '--devices', devices, '--quiet', '--checkpoint-dir', out / 'ck',
                '--metrics', out / 'm.jsonl')
    assert r.returncode == 0, r.stderr
    summary = [json.loads(line) for line in open(out / 'm.jsonl')][-1]
    return load_params(out / 'ck' / 'model.params'), summary


@needs_gpu
@pytest.mark.parametrize('gpu,cpu', [('gpu:0', 'cpu'), pytest.param('gpu:0,1', 'cpu:2', marks=needs_two)])
@pytest.mark.parametrize('flags', [ONE_STEP, ONE_EPOCH], ids=['step', 'epoch'])
def test_gpu_parameters_track_the_cpu(gpu, cpu, flags, tmp_path):
    on_gpu, gpu_summary = _train(tmp_path / 'gpu', gpu, flags)
    on_cpu, cpu_summary = _train(tmp_path / 'cpu', cpu, flags)
    for name in on_cpu:
        assert np.abs(on_gpu[name] - on_cpu[name]).max() < 1e-5, name   # cuBLAS vs OpenBLAS sums
    assert abs(gpu_summary['test_acc'] - cpu_summary['test_acc']) <= 0.003


@needs_gpu
@needs_real_data
def test_five_epochs_on_one_gpu_reach_the_cpu_accuracy(tmp_path):
    _, on_gpu = _train(tmp_path / 'gpu', 'gpu:0', ['--epochs', '5'])
    _, on_cpu = _train(tmp_path / 'cpu', 'cpu', ['--epochs', '5'])
    assert on_gpu['layout'] == 'local' and on_gpu['epochs'] == 5
    assert abs(on_gpu['test_acc'] - on_cpu['test_acc']) <= 0.003
