"""examples/softmax_regression.ipynb, executed for real by a Jupyter kernel
(nbclient, ipykernel), with one kernel interrupt mid-training."""
import os
import signal
import threading
import time

import pytest

from harness import ROOT, needs_real_data

nbclient = pytest.importorskip('nbclient', reason='nbclient not installed (the test extra has it)')
nbformat = pytest.importorskip('nbformat')
pytest.importorskip('ipykernel', reason='ipykernel not installed (the test extra has it)')

NOTEBOOK = os.path.join(ROOT, 'examples', 'softmax_regression.ipynb')


def _interrupt_once_training(client, metrics, give_up):
    """Interrupt the kernel once the long run has finished an epoch (its metrics file
    exists), as Jupyter's interrupt button does for a local kernel: SIGINT to its process."""
    deadline = time.monotonic() + give_up
    while not os.path.exists(metrics) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(client.km.provisioner.pid, signal.SIGINT)


@needs_real_data
def test_the_notebook_runs_and_survives_an_interrupt(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': str(tmp_path)}})
    with client.setup_kernel(env=env):
        for index, cell in enumerate(nb.cells):
            interrupted = 'raises-exception' in cell.metadata.get('tags', [])
            if interrupted:
                watcher = threading.Thread(target=_interrupt_once_training,
                                           args=(client, tmp_path / 'runs' / 'long.jsonl', 300))
                watcher.start()
            client.execute_cell(cell, index)
            if interrupted:
                watcher.join()
    code = [c for c in nb.cells if c.cell_type == 'code']
    errors = [(i, o) for i, c in enumerate(code) for o in c.outputs if o.output_type == 'error']
    # the interrupted cell alone failed, with the package's KeyboardInterrupt
    assert [(i, o.ename) for i, o in errors] == [(len(code) - 2, 'Interrupted')], errors
    assert 'interrupted by SIGINT' in errors[0][1].evalue
    # the figures were shown inline, and the cell after the interrupt trained
    pngs = [o for c in code for o in c.outputs if 'image/png' in o.get('data', {})]
    assert len(pngs) == 2
    last = code[-1].outputs[-1]['data']['text/plain']
    assert 0.5 < float(last) < 1.0
    first_epochs = ''.join(o.get('text', '') for o in code[0].outputs)
    assert first_epochs.count('epoch ') == 5 and 'done: local' in first_epochs
