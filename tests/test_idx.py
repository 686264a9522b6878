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


def test_nul_padding_and_trailing_bytes_read_as_gzip_reads_them(tmp_path):
    """Tape-style NUL padding after the last member (gzip -t and Python's gzip
    accept it) is skipped; bytes after it that are no gzip member end the stream."""
    raw = bytes(range(256)) * 40
    path = tmp_path / 'f.gz'
    for tail in (b'\0' * 512, b'\0' * (5 << 20)):
        open(path, 'wb').write(gzip.compress(raw) + tail)
        assert bytes(idx.read_gz(path)) == raw == gzip.open(path).read()
    open(path, 'wb').write(gzip.compress(raw) + b'\0' * 10 + gzip.compress(raw))
    assert bytes(idx.read_gz(path)) == raw + raw == gzip.open(path).read()
    open(path, 'wb').write(gzip.compress(raw) + b'trailing garbage')
    assert bytes(idx.read_gz(path)) == raw
