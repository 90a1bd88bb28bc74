"""Read TensorFlow checkpoints (tensor bundle V2) with numpy only.

A checkpoint ``PREFIX`` is a set of files: ``PREFIX.index``, a sorted
string table (:mod:`.sstable`) whose entries describe the bundle and every
tensor (:mod:`.meta`), and the data shards ``PREFIX.data-SSSSS-of-NNNNN``,
raw little-endian C-order tensor bytes concatenated without padding, which
:class:`CheckpointReader` reads (:mod:`.reader`). :func:`open_checkpoint`
finds a checkpoint in a prefix, a folder or a tar archive (:mod:`.opening`).

Checkpoints come from the internet, so every number read from a file is
checked against the size of that file before anything is allocated or
looped over with it: block handles and tensor extents must lie inside their
file, data blocks must follow each other (so the table is read in one pass),
a block's keys may not expand to more than a fixed multiple of the block
(prefix compression restarts every 16 keys in TensorFlow's tables), a shape
must fit int64 and numpy, and only the shards that entries name are looked
for (not ``range(num_shards)``). Any failure is a
:class:`TFCheckpointError` of one line naming the file.

CRC-32C checksums come from :mod:`deeplabplus_mm.converters.crc`; the
writer the tests and benchmarks use, ``tools/fixtures/tf_bundle_writer.py``,
is not installed.
"""
from .errors import TFCheckpointError
from .meta import read_index
from .opening import load_checkpoint, open_checkpoint
from .reader import CheckpointReader

__all__ = [
    'TFCheckpointError', 'read_index', 'CheckpointReader', 'open_checkpoint',
    'load_checkpoint'
]
