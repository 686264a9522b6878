"""The IDX file format, gzipped: read strictly, written for tests and tools.

Every error is a DataError naming the file and what is wrong with it.
"""
import gzip
import os
import zlib

import numpy as np

from .errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
GZIP_MAGIC = b'\x1f\x8b'
_IN, _OUT = 4 << 20, 8 << 20  # compressed bytes read, decompressed bytes made, per zlib call


def read_gz(path):
    """The decompressed bytes, in one buffer that the gzip trailer sizes.

    zlib is fed 4 MB a call: each call releases the GIL for tens of ms, which
    lets this read run beside mxnet's import (gzip.open's 128 KB pieces waited
    for the GIL some 200 times). CRC and length are zlib's checks."""
    try:
        f = open(path, 'rb')
    except FileNotFoundError:
        raise DataError(f'{path}: file missing') from None
    except OSError as e:              # a directory, no permission
        raise DataError(f'{path}: unreadable ({e.strerror})') from None
    with f:
        try:
            f.seek(-4, os.SEEK_END)   # gzip's trailer: the content's size mod 2**32
            # a corrupt trailer must not make us allocate gigabytes: past 256 MiB
            # (5x the largest Fashion-MNIST file) the buffer grows as it fills
            hint = min(int.from_bytes(f.read(4), 'little'), 1 << 28)
        except OSError:
            hint = 0                  # shorter than a trailer: the checks below say why
        f.seek(0)
        buf, n = bytearray(hint), 0
        try:
            for piece in _inflate(f, path):
                buf[n:n + len(piece)] = piece   # grows buf if the trailer undercounts
                n += len(piece)
        except zlib.error as e:
            raise DataError(f'{path}: unreadable gzip ({e})') from None
        except OSError as e:          # the disk, mid-read
            raise DataError(f'{path}: unreadable ({e.strerror})') from None
    return buf if n == len(buf) else memoryview(buf)[:n]


def _inflate(f, path):
    """The decompressed pieces of every gzip member in file f."""
    member, started = None, False
    while True:
        data = f.read(_IN)
        if not data:
            break
        if not started and data[:2] != GZIP_MAGIC:
            raise DataError(f'{path}: not a gzip file')
        started = True
        while data:
            if member is None:
                # between members, as gzip(1) and Python's gzip read them: NUL padding
                # is skipped, and trailing bytes that are no gzip member end the stream
                data = data.lstrip(b'\0')
                if not data:
                    break
                if data[:2] != GZIP_MAGIC:
                    return
                member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
            yield member.decompress(data, _OUT)
            if member.eof:            # the next member, if any, starts in unused_data
                data, member = member.unused_data, None
            else:
                data = member.unconsumed_tail
    if member is not None:
        raise DataError(f'{path}: truncated gzip file')


def parse_idx(raw, path, magic, image_shape, num_classes):
    """Strictly parse one IDX file's decompressed bytes: images (n, *image_shape)
    uint8, or labels (n,) uint8 in 0..num_classes-1. Raises DataError naming the file."""
    if len(raw) == 0:
        raise DataError(f'{path}: empty file')
    header = 16 if magic == IMAGES_MAGIC else 8
    if len(raw) < header:
        raise DataError(f'{path}: {len(raw)} bytes, shorter than the {header}-byte IDX header')
    found = int.from_bytes(raw[0:4], 'big')
    if found != magic:
        raise DataError(f'{path}: magic number {found}, expected {magic}')
    count = int.from_bytes(raw[4:8], 'big')
    if magic == IMAGES_MAGIC:
        rows, cols = int.from_bytes(raw[8:12], 'big'), int.from_bytes(raw[12:16], 'big')
        if (rows, cols) != tuple(image_shape):
            raise DataError(f'{path}: images are {rows}x{cols}, expected {image_shape[0]}x{image_shape[1]}')
        item = rows * cols
    else:
        item = 1
    body = len(raw) - header
    if body != count * item:
        raise DataError(f'{path}: header says {count} items but the file holds '
                        f'{body // item} ({body} bytes after the header)')
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if magic == IMAGES_MAGIC:
        return arr.reshape(count, *image_shape)
    if count and arr.max() >= num_classes:
        raise DataError(f'{path}: label {int(arr.max())} out of range 0-{num_classes - 1}')
    return arr


def write_idx(path, array, magic):
    """Write an IDX gz file (tests and tools use it to make data sets)."""
    header = magic.to_bytes(4, 'big') + len(array).to_bytes(4, 'big')
    if magic == IMAGES_MAGIC:
        header += b''.join(int(d).to_bytes(4, 'big') for d in array.shape[1:])
    with gzip.open(path, 'wb') as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
