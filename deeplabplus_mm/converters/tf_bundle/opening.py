"""Opening a checkpoint from a prefix, a folder or a tar archive.

A ``.tar.gz`` cannot be read at random, so the archive is read once as a
stream and its checkpoint members are copied one at a time into anonymous
temporary files (deleted when closed, whatever happens), then read like a
folder's.
"""
import os
import re
import shutil
import tarfile
import tempfile
import zlib

import numpy as np

from .errors import TFCheckpointError
from .meta import data_name, read_index, used_shards
from .reader import CheckpointReader, FileShard

try:
    from lzma import LZMAError
except ImportError:  # Python built without lzma
    LZMAError = OSError

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
        for sid in used_shards(index[1]):
            name = data_name(prefix, sid, index[0]['num_shards'])
            if os.path.isfile(name):
                shards[sid] = FileShard(open(name, 'rb', buffering=0))
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
    files, states, count = {}, {}, 0  # member -> FileShard; folder -> text
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
                        files[name] = FileShard(_unpack(archive, member,
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
        for sid in used_shards(index[1]):
            name = data_name(prefix, sid, index[0]['num_shards'])
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
