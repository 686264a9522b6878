"""Fashion-MNIST: find the four IDX files, verify them, parse them strictly.

Images stay uint8 (47 MB for the training set); they are cast to float32 per
batch on the device. Synthetic data has the same shapes and dtypes.
"""
import fcntl
import hashlib
import os
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from .errors import DataError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_gz
from .task import FASHION_MNIST

# the default data set's names, for the modules and tests that read the files
FILES, CLASSES = FASHION_MNIST.files, FASHION_MNIST.classes
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
UPSTREAM_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'


@dataclass
class Dataset:
    train_images: np.ndarray   # (n, *spec.image_shape) uint8
    train_labels: np.ndarray   # (n,) uint8
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str                # a directory, or 'synthetic(seed=S)'
    # what a checkpoint records: {'sha256': {file: digest of its content}} for
    # IDX files, {'synthetic': n_train, 'seed': seed} for synthetic data
    identity: dict = field(default_factory=dict)


def cache_dir():
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'distsoftmax', 'fashion-mnist')


def _has_all(d):
    return all(os.path.isfile(os.path.join(d, f)) for f in FILES)


def locate(data_dir=None, download=True):
    """The directory to read: --data-dir or DISTSOFTMAX_DATA, Debian's, the cache, else download."""
    explicit = data_dir or os.environ.get('DISTSOFTMAX_DATA')
    if explicit:
        if not os.path.isdir(explicit):
            raise DataError(f'{explicit}: data directory not found')
        for f in FILES:
            if os.path.isdir(os.path.join(explicit, f)):
                raise DataError(f'{os.path.join(explicit, f)}: is a directory, expected the gzipped IDX file')
        missing = [f for f in FILES if not os.path.isfile(os.path.join(explicit, f))]
        if missing:
            raise DataError(f'{os.path.join(explicit, missing[0])}: file missing '
                            f'(a Fashion-MNIST directory holds {", ".join(FILES)})')
        return explicit
    if _has_all(DEBIAN_DIR):
        return DEBIAN_DIR
    cache = cache_dir()
    if download:
        _download(cache)
    if _has_all(cache):
        return cache
    raise DataError(f'Fashion-MNIST not found in {DEBIAN_DIR} or {cache}: '
                    'install it with `apt-get install dataset-fashion-mnist`, '
                    'or pass --data-dir DIR (or --synthetic for a smoke run)')


def _download(cache):
    """Fetch missing or bad files into the cache; one process per host does it."""
    os.makedirs(cache, exist_ok=True)
    # a file lock, not a collective: the waiting ranks need no communicator
    with open(os.path.join(cache, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, digest in FILES.items():
            path = os.path.join(cache, name)
            if os.path.isfile(path):
                try:
                    if hashlib.sha256(read_gz(path)).hexdigest() == digest:
                        continue
                except DataError:
                    pass
                os.remove(path)   # a bad cached file is replaced, never used
            try:
                import pooch   # requests and its kin: only for a download
                base = os.environ.get('DISTSOFTMAX_MIRROR', UPSTREAM_URL)
                # pooch checks the transfer; our own hash checks the content
                pooch.retrieve(base.rstrip('/') + '/' + name, known_hash=None, fname=name,
                               path=cache, progressbar=_tty())
            except Exception as e:  # no network, HTTP error: say where we looked
                for f in os.listdir(cache):
                    if f.startswith(name) and f != name:
                        os.remove(os.path.join(cache, f))
                raise DataError(f'Fashion-MNIST not found in {DEBIAN_DIR} or {cache}, and the '
                                f'download of {name} failed ({type(e).__name__}): install it with '
                                '`apt-get install dataset-fashion-mnist`, or pass --data-dir DIR') from None
            if hashlib.sha256(read_gz(path)).hexdigest() != digest:
                os.remove(path)
                raise DataError(f'{path}: downloaded file fails its SHA-256 check; removed')


def _tty():
    return sys.stderr.isatty()


def _load_split(directory, prefix, verify, digests):
    out = []
    for kind, magic in (('images-idx3', IMAGES_MAGIC), ('labels-idx1', LABELS_MAGIC)):
        name = f'{prefix}-{kind}-ubyte.gz'
        path = os.path.join(directory, name)
        raw = read_gz(path)
        # format first: its errors say more than a hash mismatch would
        out.append(parse_idx(raw, path, magic, FASHION_MNIST.image_shape, FASHION_MNIST.num_classes))
        digests[name] = hashlib.sha256(raw).hexdigest()
        if verify and digests[name] != FILES[name]:
            raise DataError(f'{path}: SHA-256 of its content does not match Fashion-MNIST '
                            '(corrupt or another data set): replace it, or pass --no-verify '
                            'for other IDX data')
    images, labels = out
    if len(images) != len(labels):
        raise DataError(f'{os.path.join(directory, prefix)}-labels-idx1-ubyte.gz: {len(images)} images '
                        f'but {len(labels)} labels (in {prefix}-images-idx3-ubyte.gz)')
    return images, labels


def load(data_dir=None, verify=True, download=True):
    """Load the real data set (see locate() for where it is looked for)."""
    directory = locate(data_dir, download=download)
    digests = {}
    train = _load_split(directory, 'train', verify, digests)
    test = _load_split(directory, 't10k', verify, digests)
    return Dataset(*train, *test, source=directory, identity={'sha256': digests})


SYNTHETIC_CHUNK = 4096   # samples made at once: a few MB of float32 temporaries, whatever N


def synthetic(seed=0, n_train=60000, n_test=None, spec=FASHION_MNIST):
    """Deterministic, learnable stand-in with the real shapes and dtypes.

    Each class has a fixed random template of spec's image shape. A sample blends its class's
    template with another's (weight up to 0.6) and adds noise, so a linear
    model learns it fast but, like on the real set, not perfectly. Made in
    float32 chunks of SYNTHETIC_CHUNK samples straight into the uint8 result:
    the memory is the data's own (784 bytes a sample) plus a few MB.
    """
    n_test = n_test if n_test is not None else max(n_train // 6, 10)
    rng = np.random.default_rng(seed)
    k, features = spec.num_classes, spec.features
    templates = rng.uniform(0, 255, size=(k, features)).astype(np.float32)

    def draw(n):
        images = np.empty((n, features), np.uint8)
        labels = rng.integers(0, k, size=n).astype(np.uint8)
        for a in range(0, n, SYNTHETIC_CHUNK):
            b = min(a + SYNTHETIC_CHUNK, n)
            other = rng.integers(0, k, size=b - a)
            mix = rng.uniform(0, 0.6, size=(b - a, 1)).astype(np.float32)
            chunk = rng.standard_normal((b - a, features), dtype=np.float32)
            chunk *= 40
            chunk += (1 - mix) * templates[labels[a:b]]
            chunk += mix * templates[other]
            np.clip(chunk, 0, 255, out=chunk)
            images[a:b] = chunk
        return images.reshape(n, *spec.image_shape), labels

    return Dataset(*draw(n_train), *draw(n_test), source=f'synthetic(seed={seed})',
                   identity={'synthetic': n_train, 'seed': seed})


def is_fashion_mnist(identity):
    return identity.get('sha256') == FILES


def spec_of(identity):
    """The data set's spec: Fashion-MNIST's class names for Fashion-MNIST, 'class 0'... for other data."""
    return FASHION_MNIST if is_fashion_mnist(identity) else FASHION_MNIST.generic()


def class_names(identity):
    return spec_of(identity).classes


def digest(identity):
    """A short digest of a data set's identity (the content SHA-256 of its files, or the
    synthetic size and seed): equal on every rank that loaded the same data."""
    import json
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def describe(identity):
    """A data set's identity in words, for messages."""
    if 'synthetic' in identity:
        return f"synthetic data ({identity['synthetic']} samples, seed {identity['seed']})"
    if is_fashion_mnist(identity):
        return 'Fashion-MNIST'
    digest = identity.get('sha256', {}).get('train-images-idx3-ubyte.gz', '?')
    return f'other IDX data (train images SHA-256 {digest[:12]}...)'


def legacy_identity(text, seed):
    """The identity of a checkpoint written before identities ('fashion-mnist', 'synthetic:N')."""
    if text.startswith('synthetic:'):
        return {'synthetic': int(text.split(':', 1)[1]), 'seed': seed}
    return {'sha256': dict(FILES)}


def read(spec, seed):
    """The data set of a config.Data: N synthetic samples drawn from seed, or the IDX files."""
    if spec.synthetic:
        return synthetic(seed, spec.synthetic)
    return load(spec.data_dir, verify=spec.verify)


class prefetch:
    """read(spec, seed) on a second thread, started now: mxnet's import is about
    2 s of Python on one core, and zlib and SHA-256 release the GIL, so the read
    hides behind it. Only files already in place are read there (a directory
    given, or Debian's); the download cache is left to get(), which checks and
    repairs it under its lock, in the calling thread."""

    def __init__(self, spec, seed):
        self.spec, self.seed, self.data, self.error = spec, seed, None, None
        self.thread = threading.Thread(target=self._read, name='distsoftmax-data', daemon=True)
        self.thread.start()

    def _read(self):
        try:
            if not self.spec.synthetic and locate(self.spec.data_dir, download=False) == cache_dir():
                return
        except DataError:
            return      # nothing on disk: get() reads (or downloads) in the calling thread
        try:
            self.data = read(self.spec, self.seed)
        except BaseException as e:  # raised again by get()
            self.error = e

    def wait(self):
        self.thread.join()

    def get(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.data if self.data is not None else read(self.spec, self.seed)
