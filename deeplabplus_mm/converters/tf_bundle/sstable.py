"""The sorted string table of a checkpoint's ``.index`` file.

A LevelDB-style table (TensorFlow's ``tsl/lib/io/table``). Data blocks hold
key/value entries with prefix-compressed keys (``varint32 shared, varint32
non_shared, varint32 value_len, key delta, value``), then a restart array
(``uint32`` offsets and a ``uint32`` count). On disk every block is followed
by a 5-byte trailer: a compression byte (TensorFlow writes bundles
uncompressed) and the masked CRC-32C of block + compression byte. An index
block maps separator keys to the block handles (``varint64`` offset and
size) of the data blocks; a 48-byte footer at the end of the file holds the
handles of the (empty) metaindex block and of the index block, zero padding
and the magic number ``0xdb4775248b80fb57``.
"""
import struct

from ..crc import crc32c, unmask_crc32c
from .errors import Corrupt
from .wire import varint

MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5
# Most bytes of keys one table byte may decode into. TensorFlow restarts
# prefix compression every 16 keys, so its keys expand at most 16-fold; a
# crafted block could otherwise grow keys quadratically.
_KEY_EXPANSION = 64


def read_block(data, handle):
    """Contents of the block at ``handle = (offset, size)``, crc-checked."""
    offset, size = handle
    end = offset + size + _TRAILER
    if end > len(data) - _FOOTER:
        raise Corrupt(f'block at offset {offset} (size {size}) runs past '
                       f'the end of the table ({len(data)} bytes)')
    stored = unmask_crc32c(struct.unpack_from('<I', data, end - 4)[0])
    if crc32c(data[offset:end - 4]) != stored:
        raise Corrupt(f'block checksum mismatch in block at offset {offset}')
    if data[end - 5] != 0:
        raise Corrupt(f'block at offset {offset} uses compression type '
                       f'{data[end - 5]}; only uncompressed tables are '
                       'supported')
    return data[offset:offset + size]


def block_items(block):
    """Yields the ``(key, value)`` pairs of a table block, as bytes."""
    if len(block) < 4:
        raise Corrupt('block too short')
    num_restarts = struct.unpack_from('<I', block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or limit < 0:
        raise Corrupt('bad restart array')
    key, pos, key_bytes = b'', 0, _KEY_EXPANSION * len(block)
    while pos < limit:
        shared, pos = varint(block, pos)
        non_shared, pos = varint(block, pos)
        value_len, pos = varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise Corrupt('bad block entry')
        key = key[:shared] + block[pos:pos + non_shared]
        key_bytes -= len(key)
        if key_bytes < 0:
            raise Corrupt(f'keys of a {len(block)}-byte block expand to '
                           f'over {_KEY_EXPANSION} times its size')
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def block_handle(buf, pos=0):
    """Decodes a BlockHandle; returns ``((offset, size), next_pos)``."""
    offset, pos = varint(buf, pos)
    size, pos = varint(buf, pos)
    return (offset, size), pos


def table_items(data):
    """Yields all ``(key, value)`` pairs of a table, checking block crcs.

    Data blocks must come in file order without overlapping, as
    TensorFlow's ``TableBuilder`` writes them, so every byte of the table is
    read at most twice (once more by the index block).
    """
    if len(data) < _FOOTER:
        raise Corrupt(f'too short for a table footer ({len(data)} bytes)')
    footer = data[-_FOOTER:]
    if struct.unpack_from('<Q', footer, _FOOTER - 8)[0] != MAGIC:
        raise Corrupt('not a TensorFlow table (bad magic number)')
    _, pos = block_handle(footer)  # skip the (always empty) metaindex
    index_handle, _ = block_handle(footer, pos)
    previous, next_offset = None, 0
    for _, value in block_items(read_block(data, index_handle)):
        handle = block_handle(value)[0]
        if handle[0] < next_offset:
            raise Corrupt(f'data block at offset {handle[0]} overlaps the '
                           f'previous one (which ends at {next_offset})')
        block = read_block(data, handle)
        next_offset = handle[0] + handle[1] + _TRAILER
        for key, value in block_items(block):
            if previous is not None and key <= previous:
                raise Corrupt('keys out of order')
            previous = key
            yield key, value
