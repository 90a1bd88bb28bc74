"""Read and write TensorFlow checkpoints (tensor bundle V2) with numpy only.

A checkpoint ``PREFIX`` is a set of files:

* ``PREFIX.index``: a LevelDB-style sorted string table (TensorFlow's
  ``tsl/lib/io/table``). Data blocks hold key/value entries with
  prefix-compressed keys (``varint32 shared, varint32 non_shared, varint32
  value_len, key delta, value``), then a restart array (``uint32`` offsets and
  a ``uint32`` count). On disk every block is followed by a 5-byte trailer: a
  compression byte (TensorFlow writes bundles uncompressed) and the masked
  CRC-32C of block + compression byte. An index block maps separator keys to
  the block handles (``varint64`` offset and size) of the data blocks; a
  48-byte footer at the end of the file holds the handles of the (empty)
  metaindex block and of the index block, zero padding and the magic number
  ``0xdb4775248b80fb57``.
* In that table, key ``""`` holds a ``BundleHeaderProto`` (number of shards,
  endianness, format version); every other key is a tensor name whose value is
  a ``BundleEntryProto`` (dtype, shape, shard id, offset, size and masked
  CRC-32C of the tensor bytes).
* ``PREFIX.data-SSSSS-of-NNNNN``: the data shards, raw little-endian C-order
  tensor bytes concatenated without padding.

CRC-32C (Castagnoli) is computed in numpy by running a table-driven CRC over
many equal lanes of a buffer at once, then merging the lane CRCs with the
GF(2)-linear CRC combine operator. String and variant tensors (such as
``_CHECKPOINTABLE_OBJECT_GRAPH`` in TF2 object-based checkpoints) are listed in
``CheckpointReader.skipped`` and not decoded; partitioned (sliced) variables
are not supported.
"""

import functools
import mmap
import os
import re
import struct
import tarfile
import uuid

import numpy as np

__all__ = [
    'TFCheckpointError', 'crc32c', 'mask_crc32c', 'unmask_crc32c',
    'read_index', 'CheckpointReader', 'open_checkpoint', 'load_checkpoint',
    'write_checkpoint'
]


class TFCheckpointError(ValueError):
    """A checkpoint is missing, corrupt or uses an unsupported feature."""


class _Corrupt(Exception):
    """Malformed bytes; re-raised as TFCheckpointError naming the file."""


# ---------------------------------------------------------------------------
# CRC-32C
# ---------------------------------------------------------------------------

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK_DELTA = 0xA282EAD8
_LANE = 64  # bytes per lane of the vectorised CRC
_BLOCK = 1 << 21  # bytes per vectorised pass (a multiple of _LANE)
_SMALL = 4096  # buffers shorter than this are done in plain Python


def _byte_tables():
    """Slice-by-4 tables: ``t[k][b]`` = CRC of byte b + k zero bytes."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1)
    tables = [t.astype(np.uint32)]
    for _ in range(3):
        tables.append((tables[-1] >> 8) ^ tables[0][tables[-1] & 0xFF])
    return tables


_T = _byte_tables()
_T0 = _T[0].tolist()
# One 32-bit word: crc ^= word; crc = _TLO[crc & 0xffff] ^ _THI[crc >> 16].
_I16 = np.arange(65536, dtype=np.uint32)
_TLO = (_T[3][_I16 & 0xFF] ^ _T[2][_I16 >> 8]).astype('<u4')
_THI = (_T[1][_I16 & 0xFF] ^ _T[0][_I16 >> 8]).astype('<u4')
_TLO_LIST, _THI_LIST = _TLO.tolist(), _THI.tolist()


def _multmodp(a, b):
    """Product of two polynomials modulo the CRC polynomial (reflected)."""
    m, p = 1 << 31, 0
    while a:
        if a & m:
            p ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


@functools.lru_cache(maxsize=None)
def _shift_tables(nbytes):
    """Tables of the map: CRC state -> state after ``nbytes`` zero bytes.

    Returns:
        A ``(4, 256)`` uint32 array ``t``; the map is ``t[0][c & 255] ^
        t[1][(c >> 8) & 255] ^ t[2][(c >> 16) & 255] ^ t[3][c >> 24]``.
    """
    # xn = x^(8 nbytes) mod P, by square-and-multiply (1 << 31 is x^0).
    xn, square, n = 1 << 31, 1 << 30, 8 * nbytes
    while n:
        if n & 1:
            xn = _multmodp(square, xn)
        square, n = _multmodp(square, square), n >> 1
    basis = np.array([_multmodp(xn, 1 << i) for i in range(32)],
                     dtype=np.uint32).reshape(4, 1, 8)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    return np.bitwise_xor.reduce(np.where(bits == 1, basis, 0), axis=2)


def _shift(crc, nbytes):
    """Appends ``nbytes`` zero bytes to CRC state(s) (int or uint32 array)."""
    t = _shift_tables(nbytes)
    return (t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF]
            ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24])


def _update_small(crc, a):
    """CRC state update over a uint8 array, in plain Python."""
    n4 = a.size & ~3
    for word in a[:n4].view('<u4').tolist():
        crc ^= word
        crc = _TLO_LIST[crc & 0xFFFF] ^ _THI_LIST[crc >> 16]
    for byte in a[n4:].tolist():
        crc = (crc >> 8) ^ _T0[(crc ^ byte) & 0xFF]
    return crc


def _update_lanes(crc, block):
    """CRC state update over a 4-byte aligned block of whole lanes."""
    lanes = block.size // _LANE
    words = block.view('<u4').reshape(lanes, _LANE // 4)
    c = np.zeros(lanes, dtype='<u4')
    c[0] = crc
    halves = c.view('<u2').reshape(lanes, 2)
    lo, hi = np.empty_like(c), np.empty_like(c)
    for k in range(_LANE // 4):
        np.bitwise_xor(c, words[:, k], out=c)
        np.take(_TLO, halves[:, 0], out=lo)
        np.take(_THI, halves[:, 1], out=hi)
        np.bitwise_xor(lo, hi, out=c)
    # Merge neighbouring lanes: state(A + B) = shift(state(A), len(B)) ^
    # state(B), as all lanes but the first started from 0. The odd last lane
    # of a level is set aside and appended at the end, outermost level first.
    pending, length = [], _LANE
    while c.size > 1:
        if c.size & 1:
            pending.append((int(c[-1]), length))
            c = c[:-1]
        c = _shift(c[0::2], length) ^ c[1::2]
        length *= 2
    crc = int(c[0])
    for value, length in reversed(pending):
        crc = int(_shift(crc, length)) ^ value
    return crc


def _as_uint8(data):
    """Flat uint8 view of a bytes-like object or array (copied if strided)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) as TensorFlow's ``crc32c::Value``/``Extend``.

    Args:
        data: bytes, bytearray, memoryview, mmap or numpy array (raw bytes).
        crc: CRC of preceding data to extend:
            ``crc32c(a + b) == crc32c(b, crc32c(a))``.

    Returns:
        The (unmasked) CRC as an int.
    """
    a = _as_uint8(data)
    state = crc ^ 0xFFFFFFFF
    if a.size >= _SMALL:
        head = -a.__array_interface__['data'][0] % 4  # word-align the rest
        state = _update_small(state, a[:head])
        a = a[head:]
        end = a.size - a.size % _LANE
        for start in range(0, end, _BLOCK):
            state = _update_lanes(state, a[start:min(start + _BLOCK, end)])
        a = a[end:]
    return _update_small(state, a) ^ 0xFFFFFFFF


def mask_crc32c(crc):
    """Masks a CRC as TensorFlow stores it (``crc32c::Mask``)."""
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc32c(masked):
    """Inverse of :func:`mask_crc32c`."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Varints and protobuf wire format
# ---------------------------------------------------------------------------


def _varint(buf, pos):
    """Decodes the varint at ``buf[pos]``; returns ``(value, next_pos)``."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt('truncated varint')
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _Corrupt('varint longer than 10 bytes')


def _put_varint(out, value):
    """Appends the varint encoding of a non-negative int to a bytearray."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _pb_parse(buf):
    """Parses a protobuf message into ``{field: [values]}`` (int or bytes)."""
    fields, pos = {}, 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 2, 5):
            if wire == 2:
                size, pos = _varint(buf, pos)
            else:
                size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise _Corrupt('truncated protobuf field')
            value = buf[pos:pos + size]
            if wire != 2:
                value = int.from_bytes(value, 'little')
            pos += size
        else:
            raise _Corrupt(f'unsupported protobuf wire type {wire}')
        fields.setdefault(key >> 3, []).append(value)
    return fields


def _pb_int(fields, number, signed=False):
    """Last value of an integer field (proto3 semantics; default 0)."""
    value = fields.get(number, [0])[-1]
    if not isinstance(value, int):
        raise _Corrupt(f'protobuf field {number} is not an integer')
    return value - (1 << 64) if signed and value >= 1 << 63 else value


def _pb_ints(fields, number):
    """All values of a repeated integer field, packed or not."""
    values = []
    for value in fields.get(number, []):
        if isinstance(value, int):
            values.append(value)
            continue
        pos = 0
        while pos < len(value):
            item, pos = _varint(value, pos)
            values.append(item)
    return values


def _pb_messages(fields, number):
    """The parsed sub-messages of a (repeated) message field."""
    values = fields.get(number, [])
    if not all(isinstance(v, bytes) for v in values):
        raise _Corrupt(f'protobuf field {number} is not a message')
    return [_pb_parse(v) for v in values]


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


# ---------------------------------------------------------------------------
# Sorted string table (.index)
# ---------------------------------------------------------------------------

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5


def _read_block(data, handle):
    """Contents of the block at ``handle = (offset, size)``, crc-checked."""
    offset, size = handle
    end = offset + size + _TRAILER
    if end > len(data) - _FOOTER:
        raise _Corrupt(f'block at offset {offset} (size {size}) runs past '
                       'the end of the table')
    stored = unmask_crc32c(struct.unpack_from('<I', data, end - 4)[0])
    if crc32c(data[offset:end - 4]) != stored:
        raise _Corrupt(f'block checksum mismatch in block at offset {offset}')
    if data[end - 5] != 0:
        raise _Corrupt(f'block at offset {offset} uses compression type '
                       f'{data[end - 5]}; only uncompressed tables are '
                       'supported')
    return data[offset:offset + size]


def _block_items(block):
    """Yields the ``(key, value)`` pairs of a table block, as bytes."""
    if len(block) < 4:
        raise _Corrupt('block too short')
    num_restarts = struct.unpack_from('<I', block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or limit < 0:
        raise _Corrupt('bad restart array')
    key, pos = b'', 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise _Corrupt('bad block entry')
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _block_handle(buf, pos=0):
    """Decodes a BlockHandle; returns ``((offset, size), next_pos)``."""
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _table_items(data):
    """Yields all ``(key, value)`` pairs of a table, checking block crcs."""
    if len(data) < _FOOTER:
        raise _Corrupt(f'too short for a table footer ({len(data)} bytes)')
    footer = data[-_FOOTER:]
    if struct.unpack_from('<Q', footer, _FOOTER - 8)[0] != _MAGIC:
        raise _Corrupt('not a TensorFlow table (bad magic number)')
    _, pos = _block_handle(footer)  # skip the (always empty) metaindex
    index_handle, _ = _block_handle(footer, pos)
    previous = None
    for _, handle in _block_items(_read_block(data, index_handle)):
        block = _read_block(data, _block_handle(handle)[0])
        for key, value in _block_items(block):
            if previous is not None and key <= previous:
                raise _Corrupt('keys out of order')
            previous = key
            yield key, value


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
    footer += bytes(40 - len(footer)) + struct.pack('<Q', _MAGIC)
    return bytes(out + footer)


# ---------------------------------------------------------------------------
# Bundle metadata
# ---------------------------------------------------------------------------

# TensorFlow DataType enum -> numpy dtype of the stored (little-endian) bytes.
_DTYPES = {
    code: np.dtype(dtype)
    for code, dtype in [(1, '<f4'), (2, '<f8'), (3, '<i4'), (4, 'u1'),
                        (5, '<i2'), (6, 'i1'), (8, '<c8'), (9, '<i8'),
                        (10, '?'), (17, '<u2'), (18, '<c16'), (19, '<f2'),
                        (22, '<u4'), (23, '<u8')]
}
_TF_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_DT_BFLOAT16 = 14  # stored as uint16, returned as (exactly equal) float32
_NOT_DECODED = {7: 'string', 21: 'variant'}  # CheckpointReader.skipped
_BUNDLE_VERSION = 1  # reader version checked against the header's VersionDef


def _parse_entry(value, name):
    """Decodes a BundleEntryProto into the dict described in read_index."""
    fields = _pb_parse(value)
    shape = ()
    for shape_proto in _pb_messages(fields, 2)[-1:]:
        if _pb_int(shape_proto, 3):
            raise _Corrupt(f'tensor {name!r} has an unknown rank')
        shape = tuple(
            _pb_int(dim, 1, signed=True)
            for dim in _pb_messages(shape_proto, 2))
    code = _pb_int(fields, 1)
    dtype = np.dtype('<f4') if code == _DT_BFLOAT16 else _DTYPES.get(code)
    entry = {
        'dtype': dtype,
        'tf_dtype': code,
        'shape': shape,
        'shard_id': _pb_int(fields, 3),
        'offset': _pb_int(fields, 4, signed=True),
        'size': _pb_int(fields, 5, signed=True),
        'crc32c': unmask_crc32c(_pb_int(fields, 6)),
        'slices': len(fields.get(7, [])),
    }
    if min(shape + (entry['offset'], entry['size'])) < 0:
        raise _Corrupt(f'tensor {name!r} has a negative dimension, offset '
                       'or size')
    stored = _DTYPES[17] if code == _DT_BFLOAT16 else dtype
    if stored is not None and not entry['slices']:
        expected = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
        if entry['size'] != expected:
            raise _Corrupt(f'tensor {name!r} of shape {shape} has '
                           f'{entry["size"]} bytes, expected {expected}')
    return entry


def read_index(index_bytes, name='<index>'):
    """Parses a checkpoint's ``.index`` file.

    Args:
        index_bytes: contents of the ``.index`` file (bytes-like).
        name: file name used in error messages.

    Returns:
        ``(header, entries)``. ``header`` is a dict with ``num_shards``,
        ``endianness`` (0 = little) and ``version`` (``producer``,
        ``min_consumer``, ``bad_consumers``). ``entries`` maps every tensor
        name, in key order, to a dict with ``dtype`` (the numpy dtype
        :meth:`CheckpointReader.get` returns: float32 for bfloat16, None for
        string, variant and unsupported tensors), ``tf_dtype`` (TensorFlow
        DataType enum), ``shape`` (tuple), ``shard_id``, ``offset``, ``size``
        (bytes), ``crc32c`` (unmasked CRC-32C of the tensor bytes) and
        ``slices`` (number of slices of a partitioned variable, normally 0).

    Raises:
        TFCheckpointError: the file is truncated or corrupt (bad magic, bad
            block crc, inconsistent entries), big-endian, or needs a newer
            reader.
    """
    data = bytes(index_bytes)
    try:
        items = _table_items(data)
        key, value = next(items, (None, None))
        if key != b'':
            raise _Corrupt('missing bundle header entry')
        fields = _pb_parse(value)
        version = (_pb_messages(fields, 3) or [{}])[-1]
        header = {
            'num_shards': _pb_int(fields, 1),
            'endianness': _pb_int(fields, 2),
            'version': {
                'producer': _pb_int(version, 1, signed=True),
                'min_consumer': _pb_int(version, 2, signed=True),
                'bad_consumers': _pb_ints(version, 3),
            },
        }
        entries = {}
        for key, value in items:
            tensor = key.decode('utf-8', 'surrogateescape')
            entry = entries[tensor] = _parse_entry(value, tensor)
            shard, num_shards = entry['shard_id'], header['num_shards']
            if not entry['slices'] and not 0 <= shard < num_shards:
                raise _Corrupt(f'tensor {tensor!r} is in shard {shard} of '
                               f'{num_shards}')
    except _Corrupt as e:
        raise TFCheckpointError(
            f'corrupt checkpoint index {name}: {e}') from None
    if header['endianness'] != 0:
        raise TFCheckpointError(
            f'{name}: big-endian checkpoints are not supported')
    version = header['version']
    if (version['min_consumer'] > _BUNDLE_VERSION
            or _BUNDLE_VERSION in version['bad_consumers']):
        raise TFCheckpointError(
            f'{name}: checkpoint format {version} is too new for this '
            f'reader (version {_BUNDLE_VERSION})')
    return header, entries


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _data_name(prefix, shard, num_shards):
    return f'{prefix}.data-{shard:05d}-of-{num_shards:05d}'


class CheckpointReader:
    """Access to the tensors of a checkpoint in memory or memory-mapped.

    Tensors come back as new writable C-contiguous arrays (copies, never views
    of the shard buffers, so they stay valid after :meth:`close`); bfloat16
    tensors come back as float32 arrays of exactly the same values. For shards
    given as ``mmap.mmap`` the pages of a tensor are released from the process
    (``MADV_DONTNEED``) once it is copied, so reading a whole checkpoint keeps
    about one copy of it resident; pass read-only or shared mappings only.

    Attributes:
        prefix: checkpoint prefix used in messages (``prefix + '.index'``).
        header: the BundleHeaderProto as a dict (see :func:`read_index`).
        entries: metadata of every entry in key order (see
            :func:`read_index`).
        skipped: names of the entries not decoded: string and variant tensors
            and the data entries of partitioned-variable slices.
    """

    def __init__(self, index, shards, prefix='<checkpoint>'):
        """Opens a checkpoint from its parts.

        Args:
            index: bytes of the ``.index`` file, or the ``(header, entries)``
                pair :func:`read_index` returned.
            shards: mapping shard id -> buffer (bytes, bytearray, memoryview,
                mmap.mmap or np.memmap) holding
                ``prefix.data-SSSSS-of-NNNNN``.
            prefix: checkpoint prefix, to name files in error messages.

        Raises:
            TFCheckpointError: corrupt index, a data shard is missing or a
                tensor extends past the end of its shard.
        """
        self.prefix = prefix
        if not isinstance(index, tuple):
            index = read_index(index, f'{prefix}.index')
        self.header, self.entries = index
        self.skipped = [
            name for name, e in self.entries.items()
            if e['tf_dtype'] in _NOT_DECODED or name.startswith('\0')
        ]
        skipped = set(self.skipped)
        self._names = [name for name in self.entries if name not in skipped]
        self._shards = {}
        for name, e in self.entries.items():
            sid, end = e['shard_id'], e['offset'] + e['size']
            if e['slices']:
                continue
            if sid not in self._shards:
                if sid not in shards:
                    raise TFCheckpointError(
                        f'missing data shard {self._data_name(sid)}')
                self._shards[sid] = (shards[sid], _as_uint8(shards[sid]))
            if end > self._shards[sid][1].size:
                raise TFCheckpointError(
                    f'tensor {name!r} (bytes {e["offset"]}..{end}) extends '
                    f'past the end of {self._data_name(sid)} '
                    f'({self._shards[sid][1].size} bytes); truncated file?')

    def _data_name(self, shard):
        return _data_name(self.prefix, shard, self.header['num_shards'])

    def names(self):
        """Names of the tensors not in :attr:`skipped`, in key order."""
        return list(self._names)

    def shape(self, name):
        """Shape of tensor ``name`` (a tuple)."""
        return self.entries[name]['shape']

    def dtype(self, name):
        """Numpy dtype :meth:`get` returns for ``name`` (None: not decoded)."""
        return self.entries[name]['dtype']

    def get(self, name, verify=True):
        """Reads one tensor.

        Args:
            name: tensor name (a key of :attr:`entries`).
            verify: check the bytes against the CRC-32C stored in the index.

        Returns:
            A new writable numpy array (a copy of the stored bytes).

        Raises:
            KeyError: no entry ``name``.
            TFCheckpointError: crc mismatch, or the tensor is a string or
                variant, partitioned or of an unsupported dtype.
        """
        e = self.entries[name]
        where = f'tensor {name!r} in {self.prefix}'
        if e['tf_dtype'] in _NOT_DECODED:
            kind = _NOT_DECODED[e['tf_dtype']]
            raise TFCheckpointError(
                f'{where} is a {kind} tensor, which is not supported')
        if e['slices']:
            raise TFCheckpointError(
                f'{where} is a partitioned variable ({e["slices"]} slices), '
                'which is not supported')
        if e['dtype'] is None:
            raise TFCheckpointError(f'{where} has an unsupported dtype '
                                    f'(TensorFlow DataType {e["tf_dtype"]})')
        source, buf = self._shards[e['shard_id']]
        start, end = e['offset'], e['offset'] + e['size']
        raw = buf[start:end].copy()
        if isinstance(source, mmap.mmap) and raw.size and hasattr(
                mmap, 'MADV_DONTNEED'):
            page = start - start % mmap.PAGESIZE
            source.madvise(mmap.MADV_DONTNEED, page, end - page)
        if verify:
            actual = crc32c(raw)
            if actual != e['crc32c']:
                raise TFCheckpointError(
                    f'crc32c mismatch for tensor {name!r} in '
                    f'{self._data_name(e["shard_id"])} (stored '
                    f'{e["crc32c"]:08x}, computed {actual:08x})')
        if e['tf_dtype'] == _DT_BFLOAT16:
            raw = (raw.view('<u2').astype('<u4') << 16).view(np.uint8)
        return raw.view(e['dtype']).reshape(e['shape'])

    def items(self, verify=True):
        """Yields ``(name, array)`` for every tensor of :meth:`names`."""
        for name in self._names:
            yield name, self.get(name, verify)

    def close(self):
        """Drops the shard buffers (memory maps close once unreferenced)."""
        self._shards = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_DATA_RE = re.compile(r'^(.*)\.data-(\d{5})-of-(\d{5})$')
_STATE_RE = re.compile(r'^model_checkpoint_path:\s*"([^"]*)"', re.MULTILINE)


def _choose(prefixes, state_text, where):
    """Picks one of ``prefixes``, as named by a ``checkpoint`` state file."""
    if len(prefixes) == 1:
        return prefixes[0]
    if not prefixes:
        raise TFCheckpointError(
            f'no checkpoint (*.index file) found in {where}')
    match = _STATE_RE.search(state_text or '')
    if match:
        wanted = os.path.basename(match[1])
        chosen = [p for p in prefixes if os.path.basename(p) == wanted]
        if len(chosen) == 1:
            return chosen[0]
    raise TFCheckpointError(
        f'several checkpoints in {where} and no "checkpoint" state file '
        f'naming one of them: {", ".join(prefixes)}')


def _map_file(path):
    """Memory-maps a file read-only (an empty file gives b'')."""
    with open(path, 'rb') as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b''
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _open_prefix(prefix):
    with open(f'{prefix}.index', 'rb') as f:
        header, entries = read_index(f.read(), f'{prefix}.index')
    n = header['num_shards']
    files = {i: _data_name(prefix, i, n) for i in range(n)}
    shards = {i: _map_file(f) for i, f in files.items() if os.path.isfile(f)}
    return CheckpointReader((header, entries), shards, prefix)


def _open_folder(folder):
    prefixes = sorted(
        os.path.join(folder, f[:-len('.index')]) for f in os.listdir(folder)
        if f.endswith('.index') and os.path.isfile(os.path.join(folder, f)))
    state, state_text = os.path.join(folder, 'checkpoint'), None
    if len(prefixes) > 1 and os.path.isfile(state):
        with open(state, encoding='utf-8', errors='replace') as f:
            state_text = f.read()
    return _open_prefix(_choose(prefixes, state_text, folder))


def _read_member(archive, member):
    """Reads a tar member into a bytearray, in chunks (no second copy)."""
    buf, f, pos = bytearray(member.size), archive.extractfile(member), 0
    while pos < member.size:
        n = f.readinto(memoryview(buf)[pos:pos + (1 << 22)])
        if not n:
            raise EOFError(f'truncated member {member.name}')
        pos += n
    return buf


def _open_tar(path):
    """Reads a checkpoint from a tar archive in memory, without unpacking."""
    indexes, data, states = {}, {}, {}
    try:
        with tarfile.open(path, 'r|*') as archive:  # streaming
            for member in archive:
                name = member.name
                if not member.isfile():
                    continue
                if name.endswith('.index'):
                    indexes[name[:-len('.index')]] = bytes(
                        _read_member(archive, member))
                elif _DATA_RE.match(name):
                    data[name] = _read_member(archive, member)
                elif os.path.basename(name) == 'checkpoint':
                    states[os.path.dirname(name)] = _read_member(
                        archive, member).decode('utf-8', 'replace')
    except (tarfile.TarError, OSError, EOFError) as e:
        raise TFCheckpointError(f'cannot read archive {path}: {e}') from None
    folders = {os.path.dirname(p) for p in indexes}
    state = states.get(folders.pop()) if len(folders) == 1 else None
    prefix = _choose(sorted(indexes), state, path)
    header, entries = read_index(indexes[prefix], f'{path}/{prefix}.index')
    n = header['num_shards']
    files = {i: _data_name(prefix, i, n) for i in range(n)}
    shards = {i: data[f] for i, f in files.items() if f in data}
    return CheckpointReader((header, entries), shards, f'{path}/{prefix}')


def open_checkpoint(src):
    """Opens a checkpoint for reading.

    Args:
        src: a checkpoint prefix (``.../model.ckpt`` next to
            ``model.ckpt.index``) or its ``.index`` file; a folder holding
            one checkpoint (or several and a ``checkpoint`` state file naming
            one); or a ``.tar``/``.tar.gz``/``.tgz`` archive such as the
            DeepLab model zoo's, read into memory without unpacking.

    Returns:
        A :class:`CheckpointReader`; data shards on disk are memory-mapped.

    Raises:
        TFCheckpointError: nothing at ``src``, no checkpoint or several
            candidates found, or a corrupt or incomplete checkpoint.
    """
    path = os.fspath(src)
    if os.path.isdir(path):
        return _open_folder(path)
    if os.path.isfile(f'{path}.index'):
        return _open_prefix(path)
    if os.path.isfile(path) and path.endswith('.index'):
        return _open_prefix(path[:-len('.index')])
    if os.path.isfile(path) and tarfile.is_tarfile(path):
        return _open_tar(path)
    if os.path.exists(path):
        raise TFCheckpointError(
            f'{path} is not a checkpoint prefix, folder or tar archive')
    raise TFCheckpointError(
        f'no checkpoint at {path}: neither {path}.index nor {path} exists')


def load_checkpoint(src, verify=True):
    """Reads every numeric tensor of a checkpoint.

    Args:
        src: anything :func:`open_checkpoint` accepts.
        verify: check every tensor's CRC-32C.

    Returns:
        dict name -> numpy array, in key order (string and variant tensors
        are left out).

    Raises:
        TFCheckpointError: see :func:`open_checkpoint` and
            :meth:`CheckpointReader.get`.
    """
    with open_checkpoint(src) as reader:
        return dict(reader.items(verify))


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


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
    _pb_field(header, 3, 2, bytes([0x08, _BUNDLE_VERSION]))  # producer
    items = [(b'', bytes(header))]
    temps = []
    try:
        for shard in range(num_shards):
            final = _data_name(prefix, shard, num_shards)
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
