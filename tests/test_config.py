"""--devices parsed once into a typed value, and into contexts."""
import pytest

from distsoftmax import config, contexts
from distsoftmax.errors import UsageError


def test_devices_are_parsed_once():
    import mxnet as mx
    cpu, cpu3 = config.Devices.parse('cpu'), config.Devices.parse('cpu:3')
    assert contexts.contexts_of(cpu) == [mx.cpu(0)] and not cpu.several
    assert contexts.contexts_of(cpu3) == [mx.cpu(0), mx.cpu(1), mx.cpu(2)] and cpu3.several
    assert config.Devices.parse('gpu:0,1').several and config.Devices.parse('gpu:all').several
    assert not config.Devices.parse('gpu:1').several
    for bad in ('tpu', 'cpu:0', 'cpu:x', 'gpu:a', 'gpu:0,0', ''):
        with pytest.raises(UsageError, match='--devices'):
            config.Devices.parse(bad)
    if contexts.num_gpus() == 0:
        with pytest.raises(UsageError, match='no GPU found'):
            contexts.contexts_of(config.Devices.parse('gpu:0'))
