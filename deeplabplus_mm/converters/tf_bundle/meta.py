"""A bundle's metadata: the entries of its ``.index`` table.

Key ``""`` holds a ``BundleHeaderProto`` (number of shards, endianness,
format version); every other key is a tensor name whose value is a
``BundleEntryProto`` (dtype, shape, shard id, offset, size and masked
CRC-32C of the tensor bytes). String and variant tensors (such as
``_CHECKPOINTABLE_OBJECT_GRAPH`` in TF2 object-based checkpoints) are listed
in ``CheckpointReader.skipped`` and not decoded; partitioned (sliced)
variables are not supported.
"""
import functools
import math

import numpy as np

from ..crc import unmask_crc32c
from .errors import Corrupt, TFCheckpointError
from .sstable import table_items
from .wire import pb_int, pb_ints, pb_messages, pb_parse

# TensorFlow DataType enum -> numpy dtype of the stored (little-endian) bytes.
DTYPES = {
    code: np.dtype(dtype)
    for code, dtype in [(1, '<f4'), (2, '<f8'), (3, '<i4'), (4, 'u1'),
                        (5, '<i2'), (6, 'i1'), (8, '<c8'), (9, '<i8'),
                        (10, '?'), (17, '<u2'), (18, '<c16'), (19, '<f2'),
                        (22, '<u4'), (23, '<u8')]
}
DT_BFLOAT16 = 14  # stored as uint16, returned as (exactly equal) float32
NOT_DECODED = {7: 'string', 21: 'variant'}  # CheckpointReader.skipped
BUNDLE_VERSION = 1  # reader version checked against the header's VersionDef
_MAX_RANK = 254  # TensorFlow's TensorShape::MaxDimensions()
_INT32_MAX, _INT64_MAX = 2**31 - 1, 2**63 - 1


@functools.lru_cache(maxsize=1024)
def _parse_shape(proto):
    """The dimensions in a TensorShapeProto (cached: shapes repeat)."""
    fields = pb_parse(proto)
    if pb_int(fields, 3):
        raise Corrupt('has an unknown rank')
    if len(fields.get(2, ())) > _MAX_RANK:
        raise Corrupt(f'has rank {len(fields[2])} > {_MAX_RANK}')
    return tuple(
        pb_int(dim, 1, signed=True) for dim in pb_messages(fields, 2))


def _parse_entry(value, name):
    """Decodes a BundleEntryProto into the dict described in read_index."""
    fields = pb_parse(value)
    shape = ()
    if 2 in fields:
        if not isinstance(fields[2][-1], bytes):
            raise Corrupt(f'tensor {name!r} has a bad shape')
        try:
            shape = _parse_shape(fields[2][-1])
        except Corrupt as e:
            raise Corrupt(f'tensor {name!r} {e}') from None
    code = pb_int(fields, 1)
    dtype = np.dtype('<f4') if code == DT_BFLOAT16 else DTYPES.get(code)
    entry = {
        'dtype': dtype,
        'tf_dtype': code,
        'shape': shape,
        'shard_id': pb_int(fields, 3),
        'offset': pb_int(fields, 4, signed=True),
        'size': pb_int(fields, 5, signed=True),
        'crc32c': unmask_crc32c(pb_int(fields, 6)),
        'slices': len(fields.get(7, [])),
    }
    if min(shape + (entry['offset'], entry['size'])) < 0:
        raise Corrupt(f'tensor {name!r} has a negative dimension, offset '
                       'or size')
    stored = DTYPES[17] if code == DT_BFLOAT16 else dtype
    # Exact (Python int) sizes: an int64 product can wrap around to the
    # stored size. numpy, like TensorFlow, needs the product of the non-zero
    # dimensions in int64 even for an empty tensor.
    itemsize = 1 if stored is None else stored.itemsize
    if math.prod(d for d in shape if d) * itemsize > _INT64_MAX:
        raise Corrupt(f'tensor {name!r} of shape {shape} is too large for '
                       'int64 sizes')
    if stored is not None and not entry['slices']:
        expected = math.prod(shape) * stored.itemsize
        if entry['size'] != expected:
            raise Corrupt(f'tensor {name!r} of shape {shape} has '
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
        items = table_items(data)
        key, value = next(items, (None, None))
        if key != b'':
            raise Corrupt('missing bundle header entry')
        fields = pb_parse(value)
        version = (pb_messages(fields, 3) or [{}])[-1]
        header = {
            'num_shards': pb_int(fields, 1, signed=True),
            'endianness': pb_int(fields, 2),
            'version': {
                'producer': pb_int(version, 1, signed=True),
                'min_consumer': pb_int(version, 2, signed=True),
                'bad_consumers': pb_ints(version, 3),
            },
        }
        num_shards = header['num_shards']
        if not 0 <= num_shards <= _INT32_MAX:  # an int32 in the proto
            raise Corrupt(f'bad number of shards {num_shards}')
        entries = {}
        for key, value in items:
            tensor = key.decode('utf-8', 'surrogateescape')
            entry = entries[tensor] = _parse_entry(value, tensor)
            shard = entry['shard_id']
            if not entry['slices'] and not 0 <= shard < num_shards:
                raise Corrupt(f'tensor {tensor!r} is in shard {shard} of '
                               f'{num_shards}')
    except Corrupt as e:
        raise TFCheckpointError(
            f'corrupt checkpoint index {name}: {e}') from None
    if header['endianness'] != 0:
        raise TFCheckpointError(
            f'{name}: big-endian checkpoints are not supported')
    version = header['version']
    if (version['min_consumer'] > BUNDLE_VERSION
            or BUNDLE_VERSION in version['bad_consumers']):
        raise TFCheckpointError(
            f'{name}: checkpoint format {version} is too new for this '
            f'reader (version {BUNDLE_VERSION})')
    return header, entries


def data_name(prefix, shard, num_shards):
    """The file name of data shard ``shard`` of a checkpoint."""
    return f'{prefix}.data-{shard:05d}-of-{num_shards:05d}'


def used_shards(entries):
    """Ids of the data shards that entries point into, sorted."""
    return sorted({e['shard_id'] for e in entries.values() if not e['slices']})
