import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest

from harness import REAL, needs_real_data
from distsoftmax import data
from distsoftmax.errors import DataError


def test_round_trip(idx_dir):
    d = data.load(str(idx_dir), verify=False)
    ref = data.synthetic(seed=3, n_train=600, n_test=100)
    assert d.train_images.dtype == np.uint8 and d.train_images.shape == (600, 28, 28)
    assert np.array_equal(d.train_images, ref.train_images)
    assert np.array_equal(d.test_labels, ref.test_labels)


def test_generated_files_fail_the_hash(idx_dir):
    with pytest.raises(DataError, match=r'train-images-idx3-ubyte.gz: SHA-256'):
        data.load(str(idx_dir))


@needs_real_data
def test_real_files_verify_and_parse():
    d = data.load(REAL)
    assert d.train_images.shape == (60000, 28, 28) and d.test_images.shape == (10000, 28, 28)
    assert d.train_images.nbytes == 47040000
    assert sorted(np.unique(d.train_labels)) == list(range(10))
    assert len(data.CLASSES) == 10


def _rewrite(path, raw):
    with gzip.open(path, 'wb') as f:
        f.write(raw)


def _raw(path):
    with gzip.open(path) as f:
        return f.read()


IMG, LAB = 'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'
# (file, how to damage it, what the one-line error must say)
CORRUPTIONS = [
    (IMG, lambda p: open(p, 'wb').close(), 'not a gzip file|empty'),
    (IMG, lambda p: open(p, 'wb').write(b'hello, not gzip'), 'not a gzip file'),
    (IMG, lambda p: open(p, 'r+b').truncate(os.path.getsize(p) // 2), 'truncated gzip'),
    (IMG, lambda p: _rewrite(p, b''), 'empty file'),
    (IMG, lambda p: _rewrite(p, (1234).to_bytes(4, 'big') + _raw(p)[4:]), 'magic number 1234, expected 2051'),
    (LAB, lambda p: _rewrite(p, (2051).to_bytes(4, 'big') + _raw(p)[4:]), 'magic number 2051, expected 2049'),
    (IMG, lambda p: _rewrite(p, _raw(p)[:8] + (27).to_bytes(4, 'big') + _raw(p)[12:]), '27x28, expected 28x28'),
    (IMG, lambda p: _rewrite(p, _raw(p)[:4] + (601).to_bytes(4, 'big') + _raw(p)[8:]), 'header says 601 items but the file holds 600'),
    (IMG, lambda p: _rewrite(p, _raw(p)[:4] + (599).to_bytes(4, 'big') + _raw(p)[8:]), 'header says 599'),
    (IMG, lambda p: _rewrite(p, _raw(p)[:-784 * 10]), 'header says 600 items but the file holds 590'),
    (LAB, lambda p: _rewrite(p, _raw(p)[:4] + (599).to_bytes(4, 'big') + _raw(p)[8:-1]), '600 images but 599 labels'),
    (LAB, lambda p: _rewrite(p, _raw(p)[:-1] + bytes([10])), 'label 10 out of range 0-9'),
    (IMG, lambda p: _rewrite(p, _raw(p)[:7]), 'shorter than the 16-byte IDX header'),
    (IMG, os.remove, 'file missing'),
    (IMG, lambda p: (os.remove(p), os.mkdir(p)), 'is a directory, expected the gzipped IDX file'),
]


@pytest.mark.parametrize('name,damage,message', CORRUPTIONS)
def test_corruption_gives_one_line_naming_the_file(idx_dir, name, damage, message):
    path = str(idx_dir / name)
    damage(path)
    with pytest.raises(DataError) as e:
        data.load(str(idx_dir), verify=False)
    text = str(e.value)
    assert '\n' not in text
    assert name in text
    assert any(m in text for m in message.split('|')), text


def test_lookup_order(tmp_path, monkeypatch, idx_dir):
    monkeypatch.setattr(data, 'DEBIAN_DIR', str(tmp_path / 'debian'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    monkeypatch.delenv('DISTSOFTMAX_DATA', raising=False)
    monkeypatch.setenv('DISTSOFTMAX_MIRROR', 'http://127.0.0.1:9/')  # nothing listens there
    with pytest.raises(DataError) as e:
        data.locate()
    assert str(tmp_path / 'debian') in str(e.value) and 'apt-get install dataset-fashion-mnist' in str(e.value)
    cache = tmp_path / 'xdg' / 'distsoftmax' / 'fashion-mnist'
    assert data.cache_dir() == str(cache)
    os.makedirs(cache, exist_ok=True)
    for f in data.FILES:
        os.link(idx_dir / f, cache / f)
    assert data.locate(download=False) == str(cache)
    os.symlink(idx_dir, tmp_path / 'debian')
    assert data.locate() == str(tmp_path / 'debian')
    monkeypatch.setenv('DISTSOFTMAX_DATA', str(idx_dir))
    assert data.locate() == str(idx_dir)
    assert data.locate(str(cache)) == str(cache)  # --data-dir wins over the variable
    with pytest.raises(DataError, match='data directory not found'):
        data.locate(str(tmp_path / 'nowhere'))


def test_download_verifies_and_replaces_bad_cache(tmp_path, monkeypatch, idx_dir):
    """A local HTTP server stands in for the upstream mirror."""
    import functools
    import http.server
    import threading
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(idx_dir))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(data, 'DEBIAN_DIR', str(tmp_path / 'none'))
        monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
        monkeypatch.delenv('DISTSOFTMAX_DATA', raising=False)
        monkeypatch.setenv('DISTSOFTMAX_MIRROR', f'http://127.0.0.1:{server.server_address[1]}/')
        digests = {f: hashlib.sha256(_raw(idx_dir / f)).hexdigest() for f in data.FILES}
        monkeypatch.setattr(data, 'FILES', digests)
        cache = data.cache_dir()
        os.makedirs(cache)
        open(os.path.join(cache, IMG), 'wb').write(b'a stale, bad file')
        assert data.locate() == cache
        assert _raw(os.path.join(cache, IMG)) == _raw(idx_dir / IMG)   # replaced
        # the mirror serves a file whose content is wrong: never used
        monkeypatch.setattr(data, 'FILES', dict(digests, **{IMG: '0' * 64}))
        with pytest.raises(DataError, match='fails its SHA-256 check'):
            data.locate()
        assert not os.path.exists(os.path.join(cache, IMG))
    finally:
        server.shutdown()


def test_synthetic_is_deterministic_and_shaped():
    a, b, c = data.synthetic(1, 1000), data.synthetic(1, 1000), data.synthetic(2, 1000)
    assert np.array_equal(a.train_images, b.train_images)
    assert not np.array_equal(a.train_images, c.train_images)
    assert a.train_images.dtype == np.uint8 and a.train_images.shape == (1000, 28, 28)
    assert a.train_labels.max() <= 9 and a.test_images.shape == (166, 28, 28)


def test_data_read_beside_the_mxnet_import_gives_the_same_data_and_errors(tmp_path, idx_dir, monkeypatch):
    import threading

    import numpy as np
    from distsoftmax import config, data
    from distsoftmax.errors import DataError
    spec = config.Data(str(idx_dir), verify=False)
    got, want = data.prefetch(spec, 0).get(), data.load(str(idx_dir), verify=False)
    assert all(np.array_equal(getattr(got, k), getattr(want, k))
               for k in ('train_images', 'train_labels', 'test_images', 'test_labels'))
    assert got.identity == want.identity and set(got.identity['sha256']) == set(data.FILES)
    # a bad file: the thread's DataError reaches the caller unchanged
    with pytest.raises(DataError, match='SHA-256 of its content'):
        data.prefetch(config.Data(str(idx_dir)), 0).get()
    # nothing on disk: the thread does not download; get() does, in the caller
    calls = []
    monkeypatch.delenv('DISTSOFTMAX_DATA', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.setattr(data, 'DEBIAN_DIR', str(tmp_path / 'nowhere'))
    monkeypatch.setattr(data, '_download', lambda cache: calls.append(threading.current_thread()))
    with pytest.raises(DataError, match='not found'):
        data.prefetch(config.Data(), 0).get()
    assert calls == [threading.main_thread()]
    # files in the download cache: the caller reads them, through the checks and
    # repair of _download (under its lock), never the thread
    shutil.copytree(idx_dir, data.cache_dir())
    calls.clear()
    pending = data.prefetch(config.Data(verify=False), 0)
    pending.wait()
    assert pending.data is None and pending.error is None
    assert len(pending.get().train_labels) == 600 and calls == [threading.main_thread()]
