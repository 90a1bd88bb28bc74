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

CRC-32C checksums come from :mod:`deeplabplus_mm.converters.crc`; the
writer the tests and benchmarks use is
:mod:`deeplabplus_mm.converters.tf_bundle_writer`. String and variant tensors (such as
``_CHECKPOINTABLE_OBJECT_GRAPH`` in TF2 object-based checkpoints) are listed in
``CheckpointReader.skipped`` and not decoded; partitioned (sliced) variables
are not supported.
"""

import mmap
import os
import re
import struct
import tarfile

import numpy as np

from .crc import _as_uint8, crc32c, mask_crc32c, unmask_crc32c

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
