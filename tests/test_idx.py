"""The gzipped IDX reader; the format checks run through data.load in test_data.py."""
import gzip

import numpy as np
import pytest

from distsoftmax import idx
from distsoftmax.errors import DataError


def test_gzip_reader_agrees_with_the_gzip_module(tmp_path, monkeypatch):
    """zlib fed in pieces: every member, any piece size, a trailer that lies, a bad CRC."""
    raw = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    path = tmp_path / 'f.gz'
    open(path, 'wb').write(gzip.compress(raw[:100_000]) + gzip.compress(raw[100_000:]))
    monkeypatch.setattr(idx, '_IN', 4096)        # members split across reads
    monkeypatch.setattr(idx, '_OUT', 10_000)     # many pieces per read
    assert bytes(idx.read_gz(path)) == raw == gzip.open(path).read()
    blob = gzip.compress(raw)
    for trailer in (1000, 10**9):                 # undercounts, overcounts (capped)
        open(path, 'wb').write(blob[:-4] + trailer.to_bytes(4, 'little'))
        with pytest.raises(DataError, match='unreadable gzip'):  # zlib checks the length too
            idx.read_gz(path)
    open(path, 'wb').write(blob[:-8] + b'\0\0\0\0' + blob[-4:])   # CRC
    with pytest.raises(DataError, match='unreadable gzip'):
        idx.read_gz(path)
    with pytest.raises(DataError, match='unreadable'):   # not a file: one line, no OSError
        idx.read_gz(tmp_path)
