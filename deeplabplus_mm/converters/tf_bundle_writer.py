"""Write TensorFlow checkpoints (tensor bundle V2) with numpy only.

The project's tests and benchmarks need TF-format checkpoints of every kind
(full-size DeepLab models with optimizer slots, all dtypes, several shards,
multi-block indexes) and TensorFlow is not a dependency, so this writes them
byte for byte as TensorFlow's ``BundleWriter`` and ``TableBuilder`` do (a
test checks that against files TensorFlow wrote). The format is described in
:mod:`deeplabplus_mm.converters.tf_bundle`, the reader, whose constants this
module shares; users convert checkpoints, they do not write them.
"""
import os
import struct
import uuid

import numpy as np

from .crc import crc32c, mask_crc32c
from .tf_bundle.meta import BUNDLE_VERSION, DTYPES, data_name
from .tf_bundle.sstable import MAGIC

__all__ = ['write_checkpoint']

_TF_CODES = {dtype: code for code, dtype in DTYPES.items()}


def _put_varint(out, value):
    """Appends the varint encoding of a non-negative int to a bytearray."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _pb_field(out, number, wire, value):
    """Appends a field (wire 0: int, 2: bytes, 5: fixed32) to a bytearray."""
    _put_varint(out, number << 3 | wire)
    if wire == 0:
        _put_varint(out, value)
    elif wire == 5:
        out += struct.pack('<I', value)
    else:
        _put_varint(out, len(value))
        out += value


class _BlockBuilder:
    """Builds a table block exactly as TensorFlow's ``BlockBuilder``."""

    def __init__(self, restart_interval):
        self.restart_interval = restart_interval
        self.reset()

    def reset(self):
        self.buffer, self.restarts = bytearray(), [0]
        self.counter, self.last_key = 0, b''

    def add(self, key, value):
        shared = 0
        if self.counter < self.restart_interval:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buffer))
            self.counter = 0
        for n in (shared, len(key) - shared, len(value)):
            _put_varint(self.buffer, n)
        self.buffer += key[shared:] + value
        self.last_key = key
        self.counter += 1

    def size_estimate(self):
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def finish(self):
        restarts = self.restarts + [len(self.restarts)]
        return bytes(self.buffer) + struct.pack(f'<{len(restarts)}I',
                                                *restarts)


def _separator(start, limit):
    """TensorFlow's ``FindShortestSeparator``: short key in [start, limit)."""
    n, common = 0, min(len(start), len(limit))
    while n < common and start[n] == limit[n]:
        n += 1
    if n < common and start[n] < 0xFF and start[n] + 1 < limit[n]:
        return start[:n] + bytes([start[n] + 1])
    return start


def _successor(key):
    """TensorFlow's ``FindShortSuccessor``: a short key >= ``key``."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def _build_table(items, block_size):
    """Serialises sorted (key, value) pairs as TensorFlow's TableBuilder."""
    out = bytearray()
    data_block, index_block = _BlockBuilder(16), _BlockBuilder(1)
    pending, last_key = None, b''

    def write_block(block):
        contents = block.finish() + b'\0'  # + compression type: none
        handle = bytearray()
        _put_varint(handle, len(out))
        _put_varint(handle, len(contents) - 1)
        out.extend(contents)
        out.extend(struct.pack('<I', mask_crc32c(crc32c(contents))))
        block.reset()
        return bytes(handle)

    for i, (key, value) in enumerate(items):
        if i and data_block.buffer and len(key) + len(value) >= 2 * block_size:
            pending = write_block(data_block)
        if pending is not None:
            index_block.add(_separator(last_key, key), pending)
            pending = None
        last_key = key
        data_block.add(key, value)
        if data_block.size_estimate() >= block_size:
            pending = write_block(data_block)
    if data_block.buffer:
        pending = write_block(data_block)
    footer = bytearray(write_block(_BlockBuilder(16)))  # empty metaindex
    if pending is not None:
        index_block.add(_successor(last_key), pending)
    footer += write_block(index_block)
    footer += bytes(40 - len(footer)) + struct.pack('<Q', MAGIC)
    return bytes(out + footer)


def _entry_proto(code, shape, shard, offset, size, crc):
    """A BundleEntryProto serialised as TensorFlow does (proto3)."""
    dims = bytearray()
    for d in shape:
        dim = bytearray()
        if d:
            _pb_field(dim, 1, 0, d)
        _pb_field(dims, 2, 2, dim)
    out = bytearray()
    for number, wire, value in [(1, 0, code), (2, 2, dims), (3, 0, shard),
                                (4, 0, offset), (5, 0, size),
                                (6, 5, mask_crc32c(crc))]:
        if value or number == 2:  # zeros are omitted; the shape is not
            _pb_field(out, number, wire, value)
    return bytes(out)


def write_checkpoint(prefix, tensors, num_shards=1, block_size=4096):
    """Writes numpy arrays as a TensorFlow V2 checkpoint (tensor bundle).

    The layout is TensorFlow's: entries sorted by key, tensor bytes
    concatenated without padding, an uncompressed index table with restart
    points every 16 keys. Files are written under temporary names and renamed
    into place, data shards first and the index last.

    Args:
        prefix: checkpoint prefix; writes ``prefix.index`` and
            ``prefix.data-SSSSS-of-NNNNN``.
        tensors: mapping name -> array (bool, int8-64, uint8-64,
            float16/32/64, complex64/128).
        num_shards: number of data shards; tensors are split over them in
            key order.
        block_size: target size of the index table's blocks (TensorFlow
            uses 262144).

    Raises:
        ValueError: an empty name, an unsupported dtype or num_shards < 1.
    """
    prefix = os.fspath(prefix)
    if num_shards < 1:
        raise ValueError(f'num_shards must be at least 1, got {num_shards}')
    arrays = {}
    for name, value in tensors.items():
        array = np.asarray(value)
        dtype = array.dtype
        if dtype.byteorder == '>':
            dtype = dtype.newbyteorder('<')
        if name == '' or dtype not in _TF_CODES:
            raise ValueError(
                f'cannot write tensor {name!r} of dtype {array.dtype}')
        arrays[name.encode('utf-8')] = np.asarray(array, dtype, order='C')
    keys = sorted(arrays)
    header = bytearray()
    _pb_field(header, 1, 0, num_shards)
    _pb_field(header, 3, 2, bytes([0x08, BUNDLE_VERSION]))  # producer
    items = [(b'', bytes(header))]
    temps = []
    try:
        for shard in range(num_shards):
            final = data_name(prefix, shard, num_shards)
            os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
            temps.append((f'{final}.tempstate{uuid.uuid4().hex}', final))
            first, stop = (len(keys) * s // num_shards
                           for s in (shard, shard + 1))
            offset = 0
            with open(temps[-1][0], 'xb') as f:
                for key in keys[first:stop]:
                    raw = arrays[key].reshape(-1).view(np.uint8)
                    f.write(raw)
                    code = _TF_CODES[arrays[key].dtype]
                    items.append((key,
                                  _entry_proto(code, arrays[key].shape, shard,
                                               offset, raw.size, crc32c(raw))))
                    offset += raw.size
        final = f'{prefix}.index'
        temps.append((f'{final}.tempstate{uuid.uuid4().hex}', final))
        with open(temps[-1][0], 'xb') as f:
            f.write(_build_table(items, block_size))
        for temp, final in temps:
            os.replace(temp, final)
    finally:
        for temp, _ in temps:
            if os.path.exists(temp):
                os.remove(temp)
