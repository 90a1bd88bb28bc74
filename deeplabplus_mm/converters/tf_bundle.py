"""Read TensorFlow checkpoints (tensor bundle V2) with numpy only.

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

Checkpoints come from the internet, so every number read from a file is
checked against the size of that file before anything is allocated or
looped over with it: block handles and tensor extents must lie inside their
file, data blocks must follow each other (so the table is read in one pass),
a block's keys may not expand to more than :data:`_KEY_EXPANSION` times the
block (prefix compression restarts every 16 keys in TensorFlow's tables), a
shape must fit int64 and numpy, and only the shards that entries name are
looked for (not ``range(num_shards)``). Any failure is a
:class:`TFCheckpointError` of one line naming the file.

Tensors are read with ``readinto`` straight into the array handed out, in
chunks whose CRC-32C is computed while they are in the cache: one copy from
the page cache, nothing else held. A ``.tar.gz`` cannot be read at random,
so the archive is read once as a stream and its checkpoint members are
copied one at a time into anonymous temporary files (deleted when closed,
whatever happens), then read like a folder's.

CRC-32C checksums come from :mod:`deeplabplus_mm.converters.crc`; the
writer the tests and benchmarks use,
``tools/fixtures/tf_bundle_writer.py``, is not installed. String and variant
tensors
(such as ``_CHECKPOINTABLE_OBJECT_GRAPH`` in TF2 object-based checkpoints)
are listed in ``CheckpointReader.skipped`` and not decoded; partitioned
(sliced) variables are not supported.
"""

import functools
import math
import mmap
import os
import re
import shutil
import struct
import tarfile
import tempfile
import threading
import zlib

import numpy as np

from .crc import crc32c, mask_crc32c, unmask_crc32c

try:
    from lzma import LZMAError
except ImportError:  # Python built without lzma
    LZMAError = OSError

__all__ = [
    'TFCheckpointError', 'crc32c', 'mask_crc32c', 'unmask_crc32c',
    'read_index', 'CheckpointReader', 'open_checkpoint', 'load_checkpoint'
]


class TFCheckpointError(ValueError):
    """A checkpoint is missing, corrupt or uses an unsupported feature."""


class _Corrupt(Exception):
    """Malformed bytes; re-raised as TFCheckpointError naming the file."""


# ---------------------------------------------------------------------------
# Varints and protobuf wire format
# ---------------------------------------------------------------------------


def _varint(buf, pos):
    """Decodes the varint at ``buf[pos]``; returns ``(value, next_pos)``."""
    if pos < len(buf) and buf[pos] < 0x80:  # one byte: most of them
        return buf[pos], pos + 1
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


# ---------------------------------------------------------------------------
# Sorted string table (.index)
# ---------------------------------------------------------------------------

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5
# Most bytes of keys one table byte may decode into. TensorFlow restarts
# prefix compression every 16 keys, so its keys expand at most 16-fold; a
# crafted block could otherwise grow keys quadratically.
_KEY_EXPANSION = 64


def _read_block(data, handle):
    """Contents of the block at ``handle = (offset, size)``, crc-checked."""
    offset, size = handle
    end = offset + size + _TRAILER
    if end > len(data) - _FOOTER:
        raise _Corrupt(f'block at offset {offset} (size {size}) runs past '
                       f'the end of the table ({len(data)} bytes)')
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
    key, pos, key_bytes = b'', 0, _KEY_EXPANSION * len(block)
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise _Corrupt('bad block entry')
        key = key[:shared] + block[pos:pos + non_shared]
        key_bytes -= len(key)
        if key_bytes < 0:
            raise _Corrupt(f'keys of a {len(block)}-byte block expand to '
                           f'over {_KEY_EXPANSION} times its size')
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _block_handle(buf, pos=0):
    """Decodes a BlockHandle; returns ``((offset, size), next_pos)``."""
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _table_items(data):
    """Yields all ``(key, value)`` pairs of a table, checking block crcs.

    Data blocks must come in file order without overlapping, as
    TensorFlow's ``TableBuilder`` writes them, so every byte of the table is
    read at most twice (once more by the index block).
    """
    if len(data) < _FOOTER:
        raise _Corrupt(f'too short for a table footer ({len(data)} bytes)')
    footer = data[-_FOOTER:]
    if struct.unpack_from('<Q', footer, _FOOTER - 8)[0] != _MAGIC:
        raise _Corrupt('not a TensorFlow table (bad magic number)')
    _, pos = _block_handle(footer)  # skip the (always empty) metaindex
    index_handle, _ = _block_handle(footer, pos)
    previous, next_offset = None, 0
    for _, value in _block_items(_read_block(data, index_handle)):
        handle = _block_handle(value)[0]
        if handle[0] < next_offset:
            raise _Corrupt(f'data block at offset {handle[0]} overlaps the '
                           f'previous one (which ends at {next_offset})')
        block = _read_block(data, handle)
        next_offset = handle[0] + handle[1] + _TRAILER
        for key, value in _block_items(block):
            if previous is not None and key <= previous:
                raise _Corrupt('keys out of order')
            previous = key
            yield key, value


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
_DT_BFLOAT16 = 14  # stored as uint16, returned as (exactly equal) float32
_NOT_DECODED = {7: 'string', 21: 'variant'}  # CheckpointReader.skipped
_BUNDLE_VERSION = 1  # reader version checked against the header's VersionDef
_MAX_RANK = 254  # TensorFlow's TensorShape::MaxDimensions()
_INT32_MAX, _INT64_MAX = 2**31 - 1, 2**63 - 1


@functools.lru_cache(maxsize=1024)
def _parse_shape(proto):
    """The dimensions in a TensorShapeProto (cached: shapes repeat)."""
    fields = _pb_parse(proto)
    if _pb_int(fields, 3):
        raise _Corrupt('has an unknown rank')
    if len(fields.get(2, ())) > _MAX_RANK:
        raise _Corrupt(f'has rank {len(fields[2])} > {_MAX_RANK}')
    return tuple(
        _pb_int(dim, 1, signed=True) for dim in _pb_messages(fields, 2))


def _parse_entry(value, name):
    """Decodes a BundleEntryProto into the dict described in read_index."""
    fields = _pb_parse(value)
    shape = ()
    if 2 in fields:
        if not isinstance(fields[2][-1], bytes):
            raise _Corrupt(f'tensor {name!r} has a bad shape')
        try:
            shape = _parse_shape(fields[2][-1])
        except _Corrupt as e:
            raise _Corrupt(f'tensor {name!r} {e}') from None
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
    # Exact (Python int) sizes: an int64 product can wrap around to the
    # stored size. numpy, like TensorFlow, needs the product of the non-zero
    # dimensions in int64 even for an empty tensor.
    itemsize = 1 if stored is None else stored.itemsize
    if math.prod(d for d in shape if d) * itemsize > _INT64_MAX:
        raise _Corrupt(f'tensor {name!r} of shape {shape} is too large for '
                       'int64 sizes')
    if stored is not None and not entry['slices']:
        expected = math.prod(shape) * stored.itemsize
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
            'num_shards': _pb_int(fields, 1, signed=True),
            'endianness': _pb_int(fields, 2),
            'version': {
                'producer': _pb_int(version, 1, signed=True),
                'min_consumer': _pb_int(version, 2, signed=True),
                'bad_consumers': _pb_ints(version, 3),
            },
        }
        num_shards = header['num_shards']
        if not 0 <= num_shards <= _INT32_MAX:  # an int32 in the proto
            raise _Corrupt(f'bad number of shards {num_shards}')
        entries = {}
        for key, value in items:
            tensor = key.decode('utf-8', 'surrogateescape')
            entry = entries[tensor] = _parse_entry(value, tensor)
            shard = entry['shard_id']
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
# Data shards
# ---------------------------------------------------------------------------


def _data_name(prefix, shard, num_shards):
    return f'{prefix}.data-{shard:05d}-of-{num_shards:05d}'


def _used_shards(entries):
    """Ids of the data shards that entries point into, sorted."""
    return sorted({e['shard_id'] for e in entries.values() if not e['slices']})


class _BufferShard:
    """A data shard held in a buffer (bytes, mmap, np.memmap...)."""

    def __init__(self, buf):
        self.source = buf
        if isinstance(buf, np.ndarray):
            self.bytes = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
        else:
            self.bytes = np.frombuffer(buf, dtype=np.uint8)
        self.size = self.bytes.size

    def readinto(self, out, offset):
        end = offset + out.size
        out[:] = self.bytes[offset:end]
        if isinstance(self.source, mmap.mmap) and out.size and hasattr(
                mmap, 'MADV_DONTNEED'):
            # The copy is what the caller keeps: release the mapped pages.
            page = offset - offset % mmap.PAGESIZE
            self.source.madvise(mmap.MADV_DONTNEED, page, end - page)

    def close(self):
        pass


class _FileShard:
    """A data shard in a binary file open for reading (``seek`` and
    ``readinto``), read in place; thread-safe."""

    def __init__(self, file):
        self.file = file
        self.size = file.seek(0, os.SEEK_END)
        self._lock = threading.Lock()

    def readinto(self, out, offset):
        view, done = memoryview(out), 0
        with self._lock:
            self.file.seek(offset)
            while done < out.size:
                n = self.file.readinto(view[done:])
                if not n:
                    raise EOFError(f'file ends at byte {offset + done}, '
                                   'before the end of the tensor (it '
                                   'shrank while open?)')
                done += n

    def close(self):
        self.file.close()


# Bytes read and crc-checked at a time: a chunk is checked while cached.
_CHUNK = 1 << 20


class CheckpointReader:
    """Access to the tensors of a checkpoint in files or in memory.

    Tensors come back as new writable C-contiguous arrays (copies, never views
    of the shards, so they stay valid after :meth:`close`); bfloat16 tensors
    come back as float32 arrays of exactly the same values. Files are read
    straight into the new array; for shards given as ``mmap.mmap`` the pages
    of a tensor are released from the process (``MADV_DONTNEED``) once it is
    copied (pass read-only or shared mappings only). Either way reading a
    whole checkpoint holds no more than one copy of what the caller keeps.

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
            shards: mapping shard id -> ``prefix.data-SSSSS-of-NNNNN``, as a
                buffer (bytes, bytearray, memoryview, mmap.mmap or np.memmap)
                or a binary file object open for reading (with ``seek`` and
                ``readinto``), which :meth:`close` closes.
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
        for sid, shard in shards.items():
            if isinstance(shard, _FileShard):
                self._shards[sid] = shard
            elif hasattr(shard, 'readinto') and hasattr(shard, 'seek'):
                self._shards[sid] = _FileShard(shard)
            else:
                self._shards[sid] = _BufferShard(shard)
        missing = [s for s in _used_shards(self.entries)
                   if s not in self._shards]
        if missing:
            self.close()
            raise TFCheckpointError(
                f'missing data shard {self._data_name(missing[0])}')
        for name, e in self.entries.items():
            if e['slices']:
                continue
            sid, end = e['shard_id'], e['offset'] + e['size']
            if end > self._shards[sid].size:
                size = self._shards[sid].size
                self.close()
                raise TFCheckpointError(
                    f'tensor {name!r} (bytes {e["offset"]}..{end}) extends '
                    f'past the end of {self._data_name(sid)} ({size} '
                    'bytes); truncated file?')

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
            TFCheckpointError: crc mismatch, a read error, or the tensor is a
                string or variant, partitioned or of an unsupported dtype.
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
        if e['shard_id'] not in self._shards:
            raise TFCheckpointError(f'{where}: the reader is closed')
        raw = np.empty(e['size'], np.uint8)
        crc = 0
        try:
            for pos in range(0, raw.size, _CHUNK):
                chunk = raw[pos:pos + _CHUNK]
                self._shards[e['shard_id']].readinto(chunk, e['offset'] + pos)
                if verify:
                    crc = crc32c(chunk, crc)
        except (OSError, EOFError) as err:
            raise TFCheckpointError(
                f'cannot read {where} from '
                f'{self._data_name(e["shard_id"])}: {err}') from None
        if verify and crc != e['crc32c']:
            raise TFCheckpointError(
                f'crc32c mismatch for tensor {name!r} in '
                f'{self._data_name(e["shard_id"])} (stored '
                f'{e["crc32c"]:08x}, computed {crc:08x})')
        if e['tf_dtype'] == _DT_BFLOAT16:
            raw = (raw.view('<u2').astype('<u4') << 16).view(np.uint8)
        try:
            return raw.view(e['dtype']).reshape(e['shape'])
        except ValueError as err:  # e.g. more dimensions than numpy allows
            raise TFCheckpointError(
                f'{where} of shape {e["shape"]} cannot be a numpy array: '
                f'{err}') from None

    def items(self, verify=True):
        """Yields ``(name, array)`` for every tensor of :meth:`names`."""
        for name in self._names:
            yield name, self.get(name, verify)

    def close(self):
        """Closes the shard files and drops the buffers (memory maps close
        once unreferenced)."""
        shards, self._shards = self._shards, {}
        for shard in shards.values():
            shard.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# Opening prefixes, folders and archives
# ---------------------------------------------------------------------------

_DATA_RE = re.compile(r'^(.*)\.data-(\d{5,})-of-(\d{5,})$')
_STATE_RE = re.compile(r'^model_checkpoint_path:\s*"([^"]*)"', re.MULTILINE)
_MAX_STATE = 1 << 20  # bytes of a "checkpoint" state file looked at
_MAX_MEMBERS = 10000  # a model-zoo archive has five
# Compressed bytes tarfile decompresses at a time (all at once: up to ~1000
# times as many bytes come out).
_TAR_BUFSIZE = 1 << 14
_UNPACK_CHUNK = 1 << 18  # bytes copied at a time from an archive member
_ARCHIVE_SUFFIXES = ('.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz2',
                     '.tar.xz', '.txz')
_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, LZMAError)


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


def _reader(index, shards, prefix):
    """A CheckpointReader that owns ``shards``; closes them if it fails."""
    try:
        return CheckpointReader(index, shards, prefix)
    except BaseException:
        for shard in shards.values():
            shard.close()
        raise


def _open_prefix(prefix):
    with open(f'{prefix}.index', 'rb') as f:
        index = read_index(f.read(), f'{prefix}.index')
    shards = {}
    try:
        for sid in _used_shards(index[1]):
            name = _data_name(prefix, sid, index[0]['num_shards'])
            if os.path.isfile(name):
                shards[sid] = _FileShard(open(name, 'rb', buffering=0))
    except BaseException:
        for shard in shards.values():
            shard.close()
        raise
    return _reader(index, shards, prefix)


def _open_folder(folder):
    prefixes = sorted(
        os.path.join(folder, f[:-len('.index')]) for f in os.listdir(folder)
        if f.endswith('.index') and os.path.isfile(os.path.join(folder, f)))
    state, state_text = os.path.join(folder, 'checkpoint'), None
    if len(prefixes) > 1 and os.path.isfile(state):
        with open(state, encoding='utf-8', errors='replace') as f:
            state_text = f.read(_MAX_STATE)
    return _open_prefix(_choose(prefixes, state_text, folder))


def _unpack(archive, member, path):
    """Copies a member into an anonymous temporary file, in chunks."""
    tmp = tempfile.gettempdir()
    free = shutil.disk_usage(tmp).free
    if member.size > free:
        raise TFCheckpointError(
            f'cannot unpack {member.name} from {path}: it holds '
            f'{member.size} bytes and {tmp} has {free} free (set TMPDIR to '
            'a larger disk)')
    buf = bytearray(min(member.size, _UNPACK_CHUNK))
    view, done = memoryview(buf), 0
    dst = tempfile.TemporaryFile(buffering=0)
    try:
        src = archive.extractfile(member)
        while done < member.size:
            n = src.readinto(view[:min(len(buf), member.size - done)])
            if not n:
                raise EOFError('unexpected end of data')
            dst.write(view[:n])
            done += n
    except _ARCHIVE_ERRORS as e:
        dst.close()
        raise TFCheckpointError(f'cannot unpack {member.name} from {path} '
                                f'(byte {done} of {member.size}): '
                                f'{e}') from None
    except BaseException:
        dst.close()
        raise
    return dst


def _open_tar(path):
    """Opens the checkpoint in a tar archive without unpacking it to disk.

    The archive is read once, as a stream (a gzip file cannot be read at
    random), in ``tarfile``'s stream mode, which allocates no more than the
    data it has read whatever sizes the headers claim. Checkpoint members
    are copied one at a time into anonymous temporary files (gone once
    closed), which are then read like a folder's files.
    """
    files, states, count = {}, {}, 0  # member -> _FileShard; folder -> text
    try:
        try:
            with tarfile.open(path, 'r|*', bufsize=_TAR_BUFSIZE) as archive:
                for member in archive:
                    count += 1
                    if count > _MAX_MEMBERS:
                        raise TFCheckpointError(
                            f'{path} has over {_MAX_MEMBERS} members; unpack '
                            'it and open the checkpoint folder instead')
                    name = member.name
                    if not member.isfile():
                        continue
                    if os.path.basename(name) == 'checkpoint':
                        states[os.path.dirname(name)] = archive.extractfile(
                            member).read(_MAX_STATE).decode('utf-8', 'replace')
                    elif name.endswith('.index') or _DATA_RE.match(name):
                        if name in files:  # a later member of that name wins
                            files.pop(name).close()
                        files[name] = _FileShard(_unpack(archive, member,
                                                         path))
            indexes = sorted(n[:-len('.index')] for n in files
                             if n.endswith('.index'))
            folders = {os.path.dirname(p) for p in indexes}
            state = states.get(folders.pop()) if len(folders) == 1 else None
            prefix = _choose(indexes, state, path)
            index_file = files.pop(f'{prefix}.index')
            index_bytes = np.empty(index_file.size, np.uint8)
            try:
                index_file.readinto(index_bytes, 0)
            finally:
                index_file.close()
        except _ARCHIVE_ERRORS as e:
            raise TFCheckpointError(
                f'cannot read archive {path}: {e}') from None
        index = read_index(index_bytes, f'{path}/{prefix}.index')
        shards = {}
        for sid in _used_shards(index[1]):
            name = _data_name(prefix, sid, index[0]['num_shards'])
            if name in files:
                shards[sid] = files.pop(name)
    finally:
        for shard in files.values():  # members of no use
            shard.close()
    return _reader(index, shards, f'{path}/{prefix}')


def _is_archive(path):
    """Whether ``path`` is a (compressed) tar archive, from its name or its
    first bytes (``tarfile.is_tarfile`` would read a whole pax record,
    whatever size its header claims)."""
    if path.endswith(_ARCHIVE_SUFFIXES):
        return True
    with open(path, 'rb') as f:
        head = f.read(tarfile.BLOCKSIZE)
    if head.startswith((b'\x1f\x8b', b'BZh', b'\xfd7zXZ\x00')):
        return True
    try:
        tarfile.TarInfo.frombuf(head, 'utf-8', 'surrogateescape')
        return True
    except (tarfile.TarError, ValueError):
        return False


def open_checkpoint(src):
    """Opens a checkpoint for reading.

    Args:
        src: a checkpoint prefix (``.../model.ckpt`` next to
            ``model.ckpt.index``) or its ``.index`` file; a folder holding
            one checkpoint (or several and a ``checkpoint`` state file naming
            one); or a ``.tar``/``.tar.gz``/``.tgz`` archive such as the
            DeepLab model zoo's, read as a stream: its checkpoint members
            are copied into anonymous temporary files in ``TMPDIR``, deleted
            when the reader closes (nothing is unpacked next to it).

    Returns:
        A :class:`CheckpointReader` reading the data shards in place; close
        it (or use it as a context manager) to release them.

    Raises:
        TFCheckpointError: nothing at ``src``, no checkpoint or several
            candidates found, an unreadable, corrupt or incomplete
            checkpoint.
    """
    path = os.fspath(src)
    try:
        if os.path.isdir(path):
            return _open_folder(path)
        if os.path.isfile(f'{path}.index'):
            return _open_prefix(path)
        if os.path.isfile(path) and path.endswith('.index'):
            return _open_prefix(path[:-len('.index')])
        if os.path.isfile(path) and _is_archive(path):
            return _open_tar(path)
    except OSError as e:
        raise TFCheckpointError(
            f'cannot read {e.filename or path}: {e.strerror or e}') from None
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
