"""Bad input to the TF checkpoint reader: crafted sizes and counts,
truncations, random corruption of real TensorFlow files, archives.

Whatever the bytes, reading must end in a one-line ``TFCheckpointError``
naming the file (or in a correct read), within a second of CPU and without
allocating memory by sizes the file claims. Reads run under a CPU-time
watchdog, so that a regression fails the test instead of hanging it.
"""
import contextlib
import gzip
import io
import os
import signal
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool
from test_tf_bundle import _fixtures

from deeplabplus_mm.converters.crc import crc32c, mask_crc32c
from deeplabplus_mm.converters.tf_bundle import (CheckpointReader,
                                                 TFCheckpointError,
                                                 load_checkpoint,
                                                 open_checkpoint, opening,
                                                 read_index, sstable)
from deeplabplus_mm.converters.tf_bundle.meta import data_name
from tools.fixtures import tf_bundle_writer as tw
from tools.fixtures.tf_bundle_writer import write_checkpoint

MiB = 1 << 20


class _Hang(Exception):
    pass


@contextlib.contextmanager
def bounded(cpu_seconds=1.0, watchdog=5.0):
    """Runs a block under a CPU-time watchdog (``_Hang`` after
    ``watchdog`` CPU seconds, where the platform has ``setitimer``) and
    asserts it used less than ``cpu_seconds`` of CPU. CPU time, not wall
    time: other processes on a loaded machine do not count."""
    armed = hasattr(signal, 'setitimer')
    if armed:

        def expire(signum, frame):
            raise _Hang(f'still running after {watchdog} s of CPU')

        previous = signal.signal(signal.SIGPROF, expire)
        signal.setitimer(signal.ITIMER_PROF, watchdog)
    start = time.process_time()
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)
    used = time.process_time() - start
    assert used < cpu_seconds, f'took {used:.2f} s of CPU'


@contextlib.contextmanager
def traced():
    """Yields a dict that gets ``peak``: the most bytes (Python objects and
    numpy arrays) the block had allocated at once."""
    result, was_tracing = {}, tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield result
    finally:
        result['peak'] = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()


def assert_one_line_error(error, *names):
    message = str(error.value)
    assert '\n' not in message, message
    for name in names:
        assert str(name) in message, (name, message)


def _table(entries, num_shards=1):
    """``.index`` bytes: a bundle header with ``num_shards`` and ``entries``
    (name, BundleEntryProto bytes), as TensorFlow lays them out."""
    header = bytearray()
    tw._pb_field(header, 1, 0, num_shards)
    tw._pb_field(header, 3, 2, bytes([0x08, 0x01]))  # producer 1
    items = [(b'', bytes(header))]
    items += sorted((name.encode(), value) for name, value in entries)
    return tw._build_table(items, 4096)


def _varint(value):
    out = bytearray()
    tw._put_varint(out, value)
    return bytes(out)


def _write(prefix, index, data=None, num_shards=1):
    """Writes ``prefix.index`` and, unless None, the data shard 0."""
    with open(f'{prefix}.index', 'wb') as f:
        f.write(index)
    if data is not None:
        with open(data_name(prefix, 0, num_shards), 'wb') as f:
            f.write(data)


# ---------------------------------------------------------------------------
# Sizes and counts read from the file
# ---------------------------------------------------------------------------


def test_huge_num_shards_opens_only_the_named_shard(tmp_path):
    # A reader that builds range(num_shards) of anything never finishes.
    prefix, n = tmp_path / 'model.ckpt', 2**31 - 1  # the largest int32
    data = np.arange(6, dtype='<f4').tobytes()
    entry = tw._entry_proto(1, (2, 3), 0, 0, len(data), crc32c(data))
    _write(prefix, _table([('w', entry)], num_shards=n), data, num_shards=n)
    with bounded():
        loaded = load_checkpoint(prefix)
    assert loaded['w'].tolist() == [[0, 1, 2], [3, 4, 5]]
    os.remove(data_name(prefix, 0, n))
    with bounded(), pytest.raises(TFCheckpointError,
                                  match='missing data shard') as error:
        open_checkpoint(prefix)
    assert_one_line_error(error, data_name(prefix, 0, n))


@pytest.mark.parametrize('num_shards', [2**31, 2**63, -1])
def test_num_shards_outside_int32(tmp_path, num_shards):
    prefix = tmp_path / 'model.ckpt'
    _write(prefix, _table([], num_shards=num_shards % 2**64))
    with bounded(), pytest.raises(TFCheckpointError,
                                  match='bad number of shards') as error:
        open_checkpoint(prefix)
    assert_one_line_error(error, f'{prefix}.index')


@pytest.mark.parametrize('shape, size', [
    ((2**62, 4), 0),  # 2**64 elements: an int64 product wraps to 0
    ((2**62 + 1, 4), 16),  # wraps to 4 elements, 16 bytes, as stored
    ((0, 2**62, 2**62), 0),  # empty, but no int64 (numpy) shape
    ((3, ) * 300, 0),  # rank above TensorFlow's 254
])
def test_shape_that_int64_or_numpy_cannot_hold(tmp_path, shape, size):
    prefix = tmp_path / 'model.ckpt'
    data = bytes(size)
    entry = tw._entry_proto(1, shape, 0, 0, size, crc32c(data))
    _write(prefix, _table([('big', entry)]), data)
    with bounded(), pytest.raises(TFCheckpointError,
                                  match=r"corrupt .*tensor 'big'") as error:
        load_checkpoint(prefix)
    assert_one_line_error(error, f'{prefix}.index')


def test_rank_numpy_cannot_hold_is_one_line_error(tmp_path):
    prefix = tmp_path / 'model.ckpt'
    shape = (1, ) * 100  # TensorFlow allows it, numpy (64 at most) not
    data = bytes(4)
    entry = tw._entry_proto(1, shape, 0, 0, 4, crc32c(data))
    _write(prefix, _table([('deep', entry)]), data)
    with open_checkpoint(prefix) as reader:
        with pytest.raises(TFCheckpointError,
                           match="'deep' .* cannot be a numpy array") as error:
            reader.get('deep')
    assert_one_line_error(error, prefix)


def test_tensor_extent_beyond_the_shard(tmp_path):
    prefix = tmp_path / 'model.ckpt'
    entry = tw._entry_proto(1, (4, ), 0, 2**62, 16, 0)
    _write(prefix, _table([('far', entry)]), bytes(64))
    with bounded(), traced() as memory, pytest.raises(
            TFCheckpointError, match="'far' .* extends past the end") as error:
        open_checkpoint(prefix)
    assert memory['peak'] < 4 * MiB
    assert_one_line_error(error, data_name(prefix, 0, 1))


def _block_with_growing_keys(count):
    """A table whose one data block has ``count`` keys, each the previous
    one plus a byte (prefix compression without restarts): the keys take
    ``count**2 / 2`` bytes, from a 4-byte entry each."""
    block = bytearray()
    for i in range(count):
        shared = 0 if i == 0 else i
        block += bytes([0, 1, 0]) if i == 0 else (
            _varint(shared) + b'\x01\x00')
        block += b'k'
    block += (0).to_bytes(4, 'little') + (1).to_bytes(4, 'little')
    return bytes(block)


def test_keys_that_expand_quadratically(tmp_path):
    count = 20000  # 200 MB of keys from an 80 kB block
    header_block = tw._BlockBuilder(16)
    header_block.add(b'', bytes([0x08, 0x01]))
    index_bytes = _raw_table([header_block.finish(),
                              _block_with_growing_keys(count)])
    prefix = tmp_path / 'model.ckpt'
    _write(prefix, index_bytes, b'')
    with bounded(), traced() as memory, pytest.raises(
            TFCheckpointError, match='expand to over') as error:
        open_checkpoint(prefix)
    assert memory['peak'] < 64 * len(index_bytes) + 8 * MiB
    assert_one_line_error(error, f'{prefix}.index')


def _raw_table(blocks, handles=None):
    """A table of the given (finished) data blocks; ``handles`` overrides
    the (offset, size) the index block gives each."""
    out, found = bytearray(), []

    def put(contents):
        start = len(out)
        out.extend(contents + b'\0')
        out.extend(
            mask_crc32c(crc32c(contents + b'\0')).to_bytes(4, 'little'))
        return start, len(contents)

    for block in blocks:
        found.append(put(block))
    index = tw._BlockBuilder(1)
    for i, (offset, size) in enumerate(handles or found):
        index.add(bytes([0x80 + i]),
                  _varint(offset) + _varint(size))
    footer = bytearray()
    for offset, size in (put(tw._BlockBuilder(16).finish()),
                         put(index.finish())):
        footer += _varint(offset) + _varint(size)
    footer += bytes(40 - len(footer)) + sstable.MAGIC.to_bytes(8, 'little')
    return bytes(out + footer)


def test_overlapping_data_blocks(tmp_path):
    # Blocks that overlap let a small table make the reader parse the same
    # bytes over and over; TensorFlow writes them one after the other.
    first = tw._BlockBuilder(16)
    first.add(b'', bytes([0x08, 0x01]))
    second = tw._BlockBuilder(16)
    second.add(b'a', b'')
    index_bytes = _raw_table([first.finish(), second.finish()])
    assert read_index(index_bytes)[1]['a']['dtype'] is None
    block_size = len(first.finish())
    overlapping = _raw_table(
        [first.finish(), second.finish()],
        handles=[(0, block_size), (0, block_size)])
    with pytest.raises(TFCheckpointError, match='overlaps the previous'):
        read_index(overlapping, 'x.index')


# ---------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------


def _member_header(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT)  # base-256 sizes beyond 8 GiB


def _tar_gz(path, members):
    """A .tar.gz of ``(name, header size, data)``; the data may be shorter
    than the header says."""
    with gzip.open(path, 'wb', compresslevel=1) as f:
        for name, size, data in members:
            f.write(_member_header(name, size))
            f.write(data + bytes(-len(data) % 512))
        f.write(bytes(1024))


def _small_checkpoint(folder):
    tensors = {'a/w': np.arange(6, dtype=np.float32), 'b': np.int64(4)}
    write_checkpoint(folder / 'model.ckpt', tensors)
    return {f.name: f.read_bytes() for f in folder.iterdir()}


@pytest.mark.parametrize('claimed', [2**50, 256 * MiB])
def test_tar_gz_member_claiming_a_huge_size(tmp_path, claimed):
    files = _small_checkpoint(tmp_path / 'ckpt')
    data = files['model.ckpt.data-00000-of-00001']
    archive = tmp_path / 'model.tar.gz'
    _tar_gz(archive, [('ckpt/model.ckpt.index', len(files['model.ckpt.index']),
                       files['model.ckpt.index']),
                      ('ckpt/model.ckpt.data-00000-of-00001', claimed, data)])
    with bounded(), traced() as memory, pytest.raises(
            TFCheckpointError, match=r'model\.ckpt\.data') as error:
        open_checkpoint(archive)
    assert memory['peak'] < 8 * MiB
    assert_one_line_error(error, archive)


@pytest.mark.parametrize('name, opener', [('model.tar.gz', gzip.open),
                                          ('model.bin.gz', gzip.open),
                                          ('model.bin', open)])
def test_archive_header_claiming_a_huge_pax_record(tmp_path, name, opener):
    # tarfile (and so tarfile.is_tarfile) reads a pax record whole, except
    # in stream mode: its size must not be trusted, whatever the file name.
    archive = tmp_path / name
    info = tarfile.TarInfo('././@PaxHeader')
    info.type, info.size = tarfile.XHDTYPE, 2**40
    with opener(archive, 'wb') as f:
        f.write(info.tobuf(tarfile.GNU_FORMAT) + b'x' * 4096)
    with bounded(), traced() as memory, pytest.raises(
            TFCheckpointError, match='cannot read archive') as error:
        open_checkpoint(archive)
    assert memory['peak'] < 8 * MiB
    assert_one_line_error(error, archive)


def test_files_that_are_no_archive(tmp_path):
    for name, data in (('notes.txt', b'hello'), ('random.bin',
                                                 os.urandom(2000))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TFCheckpointError, match='is not a checkpoint'):
            open_checkpoint(tmp_path / name)


def test_truncated_archives(tmp_path):
    folder = tmp_path / 'ckpt'
    _small_checkpoint(folder)
    rng = np.random.default_rng(3)
    for suffix, mode in (('tar.gz', 'w:gz'), ('tar', 'w')):
        whole = tmp_path / f'whole.{suffix}'
        with tarfile.open(whole, mode) as tar:
            tar.add(folder, arcname='ckpt')
        data = whole.read_bytes()
        assert set(load_checkpoint(whole)) == {'a/w', 'b'}
        cut_archive = tmp_path / f'cut.{suffix}'
        errors = 0
        for cut in sorted(rng.integers(1, len(data), 12)):
            cut_archive.write_bytes(data[:cut])
            try:
                with bounded():
                    loaded = load_checkpoint(cut_archive)
            except TFCheckpointError as error:
                message = str(error)
                assert '\n' not in message and str(cut_archive) in message
                errors += 1
            else:  # only the end-of-archive padding was cut
                assert loaded['a/w'].tolist() == list(range(6)), cut
        assert errors > 6


def test_archive_with_too_many_members(tmp_path, monkeypatch):
    monkeypatch.setattr(opening, '_MAX_MEMBERS', 3)
    folder = tmp_path / 'ckpt'
    _small_checkpoint(folder)
    archive = tmp_path / 'many.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        for i in range(4):
            tar.add(folder, arcname=f'ckpt{i}', recursive=False)
    with pytest.raises(TFCheckpointError, match='over 3 members') as error:
        open_checkpoint(archive)
    assert_one_line_error(error, archive)


def _stream_peak(src):
    """Peak traced bytes while reading every tensor once and dropping it."""
    with traced() as memory:
        with open_checkpoint(src) as reader:
            for name in reader.names():
                reader.get(name)  # (``for _ in items()`` holds two)
    return memory['peak']


def test_tar_gz_reads_within_the_memory_of_a_folder(tmp_path):
    folder = tmp_path / 'train'
    rng = np.random.default_rng(0)
    tensors = {f'layer{i}/weights': rng.standard_normal(MiB, np.float32)
               for i in range(4)}  # 4 MiB each, as incompressible as weights
    tensors['layer0/BatchNorm/gamma'] = np.ones(256, np.float32)
    write_checkpoint(folder / 'model.ckpt', tensors)
    archive = tmp_path / 'train.tar.gz'
    with tarfile.open(archive, 'w:gz', compresslevel=1) as tar:
        tar.add(folder, arcname='train')
    largest = 4 * MiB
    folder_peak = _stream_peak(folder)
    archive_peak = _stream_peak(archive)
    # One copy of the tensor being read, not of the 16 MiB data shard.
    assert largest <= folder_peak < largest + 2 * MiB
    assert archive_peak < folder_peak + 2 * MiB
    loaded = load_checkpoint(archive)
    for name, value in tensors.items():
        assert loaded[name].tobytes() == value.tobytes(), name


def test_archive_temporary_files_do_not_outlive_the_reader(tmp_path,
                                                           monkeypatch):
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
    folder = tmp_path / 'ckpt'
    _small_checkpoint(folder)
    archive = tmp_path / 'model.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(folder, arcname='ckpt')
    with open_checkpoint(archive) as reader:
        assert os.listdir(scratch) == []  # unnamed (or unlinked) files
        assert reader.get('b') == 4
    assert os.listdir(scratch) == []


# ---------------------------------------------------------------------------
# Random corruption of real TensorFlow checkpoints
# ---------------------------------------------------------------------------


def _expected(folder):
    """name -> array that reading the untouched checkpoint must give."""
    npz = np.load(folder / 'expected.npz')
    expected = {n: npz[n] for n in npz.files if not n.startswith('__')}
    if '__padding_names__' in npz.files:
        for name, value in zip(npz['__padding_names__'],
                               npz['__padding_values__']):
            expected[str(name)] = value
    return expected


def _blocks(index):
    """(offset, size) of every block of a table: data, metaindex, index."""
    footer = index[-48:]
    meta, pos = sstable.block_handle(footer)
    top = sstable.block_handle(footer, pos)[0]
    index_block = sstable.read_block(index, top)
    data = [sstable.block_handle(value)[0]
            for _, value in sstable.block_items(index_block)]
    return data + [meta, top]


def _flip(original, position, rng):
    mutated = bytearray(original)
    mutated[position] ^= 1 << int(rng.integers(8))
    return mutated


def _cases(index, data, rng, flips, cuts, footer_step, deep):
    """Mutations of a checkpoint's two files, as ``(file, description,
    bytes, position)``: bit flips anywhere (and in footer bytes and the
    first bytes of the index); truncations; and ``deep`` flips inside index
    blocks whose checksum is then fixed (file ``'index, crc fixed'``), which
    reach the parsing of entries, varints and protocol buffers."""
    for kind, original in (('index', index), ('data', data)):
        positions = set(rng.integers(0, len(original), flips).tolist())
        if kind == 'index':
            positions |= set(
                range(len(original) - 48, len(original), footer_step))
            positions |= set(range(0, min(len(original), 24)))
        for position in sorted(positions):
            yield (kind, f'bit flip at {position}',
                   bytes(_flip(original, position, rng)), position)
        ends = set(rng.integers(0, len(original), cuts).tolist())
        ends |= {0, len(original) - 1}
        if kind == 'index':
            ends |= {len(original) - 48, len(original) - 49}
        for end in sorted(ends):
            yield kind, f'truncated to {end}', original[:end], None
    blocks = _blocks(index)
    for _ in range(deep):
        offset, size = blocks[int(rng.integers(len(blocks)))]
        if size == 0:
            continue
        position = offset + int(rng.integers(size))
        mutated = _flip(index, position, rng)
        end = offset + size + 1  # contents and compression byte
        mutated[end:end + 4] = mask_crc32c(crc32c(
            bytes(mutated[offset:end]))).to_bytes(4, 'little')
        yield ('index, crc fixed', f'bit flip at {position}', bytes(mutated),
               position)


# tf1_saver is read in ~0.2 s (10,016 tensors): fewer cases there.
@pytest.mark.parametrize('fixture, prefix_name, flips, cuts, footer_step, '
                         'deep', [
                             ('tf2_object', 'ckpt', 60, 20, 1, 200),
                             ('tf1_saver', 'model.ckpt', 4, 2, 16, 4),
                         ])
def test_fuzz_real_checkpoints(tmp_path, fixture, prefix_name, flips, cuts,
                               footer_step, deep):
    source = _fixtures() / fixture
    expected = _expected(source)
    index = (source / f'{prefix_name}.index').read_bytes()
    data = (source / f'{prefix_name}.data-00000-of-00001').read_bytes()
    # Byte ranges of the tensors a correct read decodes: a flip there must
    # fail their CRC-32C.
    _, entries = read_index(index)
    decoded = {name: (e['offset'], e['offset'] + e['size'])
               for name, e in entries.items() if name in expected}
    prefix = tmp_path / prefix_name
    rng = np.random.default_rng(2024)
    outcomes = {}
    for kind, what, mutated, position in _cases(index, data, rng, flips,
                                                cuts, footer_step, deep):
        _write(prefix, data=mutated if kind == 'data' else data,
               index=index if kind == 'data' else mutated)
        case = f'{fixture} {kind} {what}'
        try:
            with bounded(1.0):
                with open_checkpoint(prefix) as reader:
                    loaded = dict(reader.items())
                    shapes = {name: reader.shape(name) for name in loaded}
        except TFCheckpointError as error:
            message = str(error)
            assert '\n' not in message and str(prefix) in message, case
            if kind == 'data' and position is not None:
                hit = [n for n, (a, b) in decoded.items() if a <= position < b]
                assert not hit or 'crc32c mismatch' in message, case
            outcomes[kind, 'error'] = outcomes.get((kind, 'error'), 0) + 1
            continue
        outcomes[kind, 'read'] = outcomes.get((kind, 'read'), 0) + 1
        for name, value in loaded.items():
            assert value.shape == shapes[name], (case, name)
        if kind == 'index, crc fixed':
            continue  # a consistent index that says something else
        assert loaded.keys() == expected.keys(), case
        for name, value in expected.items():
            assert loaded[name].dtype == value.dtype, (case, name)
            assert loaded[name].tobytes() == value.tobytes(), (case, name)
    assert outcomes.get(('index, crc fixed', 'error'), 0) > deep // 4, outcomes


# ---------------------------------------------------------------------------
# What the user sees
# ---------------------------------------------------------------------------


def test_convert_tool_reports_bad_checkpoints_in_one_line(tmp_path):
    archive = tmp_path / 'zoo.tar.gz'
    _tar_gz(archive, [('x/model.ckpt.index', 2**50, b'abc')])
    proc = run_tool('tools/convert_tf_checkpoint.py', str(archive),
                    str(tmp_path / 'out.pth'), check=False)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode != 0, proc.stdout
    assert 'Traceback' not in proc.stdout, proc.stdout
    assert lines[-1].startswith(f'error: {archive}: cannot unpack '
                                f'x/model.ckpt.index from {archive}'), lines
    assert not (tmp_path / 'out.pth').exists()


def test_reader_given_file_objects_and_buffers(tmp_path):
    tensors = {'x': np.arange(5, dtype=np.int32), 'y': np.float64(2.5)}
    prefix = tmp_path / 'model.ckpt'
    write_checkpoint(prefix, tensors)
    index = (tmp_path / 'model.ckpt.index').read_bytes()
    data_path = data_name(prefix, 0, 1)
    with open(data_path, 'rb') as f:
        reader = CheckpointReader(index, {0: f}, str(prefix))
        assert reader.get('x').tolist() == [0, 1, 2, 3, 4]
        reader.close()
        assert f.closed  # the reader owns what it was given
    buffered = io.BytesIO(Path(data_path).read_bytes())
    with CheckpointReader(index, {0: buffered}, str(prefix)) as reader:
        assert reader.get('y') == 2.5
    with pytest.raises(TFCheckpointError, match='closed'):
        reader.get('y')
