"""The start-up tricks: one OpenMP thread, Python's own distutils."""
from harness import probe


ONE_THREAD = ("import os, sys; from distsoftmax import cli; assert 'mxnet' not in sys.modules; "
              "cli.main(['--synthetic', '300', '--epochs', '1', '--quiet']); "
              "print(os.environ['OMP_NUM_THREADS'])")


def test_one_cpu_thread_per_process_unless_told_otherwise():
    # set before mxnet (and OpenBLAS) load, which is when they read it
    assert probe(ONE_THREAD)[-1] == '1'
    assert probe(ONE_THREAD, OMP_NUM_THREADS='3')[-1] == '3'


def test_mxnet_loads_without_setuptools():
    # mxnet imports distutils.version; setuptools' hook would import all of setuptools
    code = ("import sys, warnings; warnings.simplefilter('error', UserWarning); "
            "from distsoftmax import cli; cli.main(['--synthetic', '300', '--epochs', '1', '--quiet']); "
            "print('mxnet' in sys.modules, 'setuptools' in sys.modules)")
    assert probe(code)[-2:] == ['True', 'False']
