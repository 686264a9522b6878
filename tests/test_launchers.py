"""Which launcher started a process, from its environment alone."""
from distsoftmax import launchers


def _clean(monkeypatch):
    for k in launchers.VARIABLES:
        monkeypatch.delenv(k, raising=False)


def test_one_host_from_the_launchers_environment(monkeypatch):
    _clean(monkeypatch)
    assert launchers.one_host()                                  # a lone process
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '4')
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '1')
    monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_SIZE', '2')
    assert not launchers.one_host() and launchers.rank() == 1   # mpirun over 2 hosts
    monkeypatch.setenv('HOROVOD_SIZE', '4')
    monkeypatch.setenv('HOROVOD_RANK', '2')
    monkeypatch.setenv('HOROVOD_LOCAL_SIZE', '4')
    assert launchers.one_host() and launchers.rank() == 2         # horovodrun, one host
    _clean(monkeypatch)
    monkeypatch.setenv('PMI_SIZE', '4')
    monkeypatch.setenv('PMI_RANK', '0')
    assert not launchers.one_host()                              # 4 ranks, no word on where
