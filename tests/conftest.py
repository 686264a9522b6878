"""Fixtures; the helpers that tests import are in harness.py."""
import pytest

import harness
from distsoftmax import data


@pytest.fixture
def idx_dir(tmp_path):
    """A small, valid Fashion-MNIST-shaped data set written as IDX gz files."""
    harness.write_idx_dir(tmp_path, data.synthetic(seed=3, n_train=600, n_test=100))
    return tmp_path
