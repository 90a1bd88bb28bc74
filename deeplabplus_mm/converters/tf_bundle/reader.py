"""Reading tensors from a checkpoint's data shards.

Tensors are read with ``readinto`` straight into the array handed out, in
chunks whose CRC-32C is computed while they are in the cache: one copy from
the page cache, nothing else held.
"""
import mmap
import os
import threading

import numpy as np

from ..crc import crc32c
from .errors import TFCheckpointError
from .meta import DT_BFLOAT16, NOT_DECODED, data_name, read_index, used_shards


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


class FileShard:
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
            if e['tf_dtype'] in NOT_DECODED or name.startswith('\0')
        ]
        skipped = set(self.skipped)
        self._names = [name for name in self.entries if name not in skipped]
        self._shards = {}
        for sid, shard in shards.items():
            if isinstance(shard, FileShard):
                self._shards[sid] = shard
            elif hasattr(shard, 'readinto') and hasattr(shard, 'seek'):
                self._shards[sid] = FileShard(shard)
            else:
                self._shards[sid] = _BufferShard(shard)
        missing = [s for s in used_shards(self.entries)
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
        return data_name(self.prefix, shard, self.header['num_shards'])

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
        if e['tf_dtype'] in NOT_DECODED:
            kind = NOT_DECODED[e['tf_dtype']]
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
        if e['tf_dtype'] == DT_BFLOAT16:
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
