"""Tests of the numpy-only TensorFlow checkpoint reader and writer (bad
input to the reader: ``test_tf_bundle_hardening.py``)."""

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import tf_refs_folder
from deeplabplus_mm.converters import crc
from deeplabplus_mm.converters.crc import crc32c
from deeplabplus_mm.converters.tf_bundle import (CheckpointReader,
                                                 TFCheckpointError,
                                                 load_checkpoint,
                                                 open_checkpoint, read_index,
                                                 sstable)
from tools.fixtures import tf_bundle_writer as tw
from tools.fixtures.tf_bundle_writer import write_checkpoint


def _fixtures():
    """The folder of real TensorFlow-written checkpoints, or skip."""
    return Path(tf_refs_folder('format_fixture'))


@pytest.fixture
def tf1():
    return _fixtures() / 'tf1_saver'


def tf1_like_tensors():
    """The kinds of tensors of the tf1_saver fixture (several dtypes and
    ranks, a scalar int64 step, a zero-sized tensor, a Momentum slot, and
    10,000 long-named variables, so the index spans more than one block
    and uses key prefix compression)."""
    rng = np.random.default_rng(0)
    tensors = {
        'global_step': np.asarray(30000, np.int64),
        'some/float64': rng.standard_normal((2, 3)),
        'some/int32': np.arange(5, dtype=np.int32),
        'some/half': rng.standard_normal((4, )).astype(np.float16),
        'empty/zero_sized': np.zeros((0, 3), np.float32),
        'net/conv/weights': rng.standard_normal((3, 3, 2, 4)).astype(
            np.float32),
        'net/conv/weights/Momentum': np.zeros((3, 3, 2, 4), np.float32),
    }
    for i in range(10000):
        tensors[f'padding/a_rather_long_variable_scope_name/var_{i:05d}'] = (
            np.full((3, ), i, np.float32))
    return tensors


@pytest.fixture
def tf1_copy(tmp_path):
    """A checkpoint like the tf1_saver fixture, written by our writer with
    TensorFlow's block size (which reproduces TF's files byte for byte:
    ``test_writer_reproduces_tensorflow_files_byte_for_byte``); returns its
    prefix, for tests that damage it."""
    prefix = tmp_path / 'model.ckpt'
    write_checkpoint(prefix, tf1_like_tensors(), block_size=262144)
    assert _num_data_blocks(Path(f'{prefix}.index').read_bytes()) >= 2
    return prefix


def _assert_same(actual, expected, name=''):
    assert actual.dtype == expected.dtype, name
    assert actual.shape == expected.shape, name
    assert actual.tobytes() == expected.tobytes(), name


def _flip(path, position):
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def _index(*entries):
    """A one-shard .index table from (name, BundleEntryProto) pairs."""
    header = bytes([0x08, 0x01, 0x1A, 0x02, 0x08, 0x01])
    items = [(b'', header)] + [(n.encode(), v) for n, v in entries]
    return tw._build_table(items, 4096)


def _num_data_blocks(index_bytes):
    footer = index_bytes[-48:]
    _, pos = sstable.block_handle(footer)
    index_handle, _ = sstable.block_handle(footer, pos)
    index_block = sstable.read_block(index_bytes, index_handle)
    return len(list(sstable.block_items(index_block)))


# ---------------------------------------------------------------------------
# Real TensorFlow checkpoints
# ---------------------------------------------------------------------------


def test_tf1_saver_every_tensor_bit_exact(tf1):
    expected = np.load(tf1 / 'expected.npz')
    tensors = load_checkpoint(tf1 / 'model.ckpt')
    assert len(tensors) == 10016
    for name in expected.files:
        if not name.startswith('__'):
            _assert_same(tensors.pop(name), expected[name], name)
    padding_names = list(expected['__padding_names__'])
    assert list(tensors) == padding_names  # all the others, in key order
    _assert_same(
        np.stack([tensors[n] for n in padding_names]),
        expected['__padding_values__'])


def test_tf1_saver_metadata(tf1):
    header, entries = read_index((tf1 / 'model.ckpt.index').read_bytes())
    assert header == {
        'num_shards': 1,
        'endianness': 0,
        'version': {
            'producer': 1,
            'min_consumer': 0,
            'bad_consumers': []
        }
    }
    assert list(entries) == sorted(entries, key=str.encode)
    step = entries['global_step']
    assert step['dtype'] == np.int64 and step['tf_dtype'] == 9
    assert step['shape'] == () and step['size'] == 8
    empty = entries['empty/zero_sized']
    assert (empty['shape'], empty['size'], empty['crc32c']) == ((0, 3), 0, 0)
    assert entries['some/half']['dtype'] == np.float16
    assert _num_data_blocks((tf1 / 'model.ckpt.index').read_bytes()) == 2


def test_tf2_object_checkpoint_skips_string_tensor(tf1):
    folder = tf1.parent / 'tf2_object'
    expected = np.load(folder / 'expected.npz')
    with open_checkpoint(folder) as reader:
        assert reader.skipped == ['_CHECKPOINTABLE_OBJECT_GRAPH']
        assert reader.names() == sorted(expected.files)
        assert reader.dtype('_CHECKPOINTABLE_OBJECT_GRAPH') is None
        with pytest.raises(TFCheckpointError, match='string tensor'):
            reader.get('_CHECKPOINTABLE_OBJECT_GRAPH')
        for name in expected.files:
            _assert_same(reader.get(name), expected[name], name)
            assert reader.shape(name) == expected[name].shape


def test_writer_reproduces_tensorflow_files_byte_for_byte(tf1, tmp_path):
    tensors = load_checkpoint(tf1 / 'model.ckpt')
    # TensorFlow's table block size is 262144.
    write_checkpoint(tmp_path / 'model.ckpt', tensors, block_size=262144)
    for suffix in ('.index', '.data-00000-of-00001'):
        ours = (tmp_path / f'model.ckpt{suffix}').read_bytes()
        assert ours == (tf1 / f'model.ckpt{suffix}').read_bytes(), suffix


# ---------------------------------------------------------------------------
# Corrupt, incomplete and unsupported checkpoints
# ---------------------------------------------------------------------------


def test_flipped_data_byte_names_tensor(tf1_copy):
    with open_checkpoint(tf1_copy) as reader:
        offset = reader.entries['some/float64']['offset']
    _flip(Path(f'{tf1_copy}.data-00000-of-00001'), offset + 5)
    with pytest.raises(
            TFCheckpointError,
            match=r"crc32c mismatch for tensor 'some/float64' in "
            r'.*model\.ckpt\.data-00000-of-00001'):
        load_checkpoint(tf1_copy)
    with open_checkpoint(tf1_copy) as reader:
        assert reader.get('some/int32').shape == (5, )  # others still fine
        assert reader.get('some/float64', verify=False).shape == (2, 3)


@pytest.mark.parametrize('cut, reason', [
    (lambda d: d[:0], 'too short'),
    (lambda d: d[:47], 'too short'),
    (lambda d: d[:150000], 'bad magic'),
    (lambda d: d[:-1], 'bad magic'),
    (lambda d: d[:1000] + d[-48:], 'past the end'),  # footer kept
])
def test_truncated_index(tf1_copy, cut, reason):
    index = Path(f'{tf1_copy}.index')
    index.write_bytes(cut(index.read_bytes()))
    message = rf'corrupt checkpoint index .*model\.ckpt\.index: .*{reason}'
    with pytest.raises(TFCheckpointError, match=message):
        open_checkpoint(tf1_copy)


def test_flipped_index_block_byte(tf1_copy):
    _flip(Path(f'{tf1_copy}.index'), 300)  # inside the first data block
    with pytest.raises(TFCheckpointError, match='block checksum mismatch'):
        open_checkpoint(tf1_copy)


def test_bad_magic(tf1_copy):
    _flip(Path(f'{tf1_copy}.index'), -1)
    with pytest.raises(TFCheckpointError, match='bad magic'):
        open_checkpoint(tf1_copy)


def test_missing_data_shard(tf1_copy):
    os.remove(f'{tf1_copy}.data-00000-of-00001')
    with pytest.raises(
            TFCheckpointError,
            match=r'missing data shard .*model\.ckpt\.data-00000-of-00001'):
        open_checkpoint(tf1_copy)


def test_truncated_data_shard(tf1_copy):
    data = Path(f'{tf1_copy}.data-00000-of-00001')
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(TFCheckpointError, match='extends past the end'):
        open_checkpoint(tf1_copy)


def test_bfloat16_read_as_exact_float32():
    values = np.array([1.5, -2.25, 3.0e38, -0.0, np.inf, 1e-40], np.float32)
    bits = (values.view(np.uint32) >> 16).astype('<u2').reshape(2, 3)
    data = bits.tobytes()
    entry = tw._entry_proto(14, (2, 3), 0, 0, len(data), crc32c(data))
    reader = CheckpointReader(_index(('bf', entry)), {0: memoryview(data)})
    out = reader.get('bf')
    assert reader.dtype('bf') == out.dtype == np.float32
    assert out.shape == (2, 3)
    assert out.tobytes() == (bits.astype(np.uint32) << 16).tobytes()


def test_unsupported_dtype_and_partitioned_variable():
    qint8 = tw._entry_proto(11, (2, ), 0, 0, 2, crc32c(b'ab'))
    sliced = bytearray(tw._entry_proto(1, (4, ), 0, 0, 0, 0))
    tw._pb_field(sliced, 7, 2, b'\x0a\x00')  # one TensorSliceProto
    index = _index(('part', bytes(sliced)), ('q', qint8))
    reader = CheckpointReader(index, {0: b'ab'}, 'ck')
    assert reader.names() == ['part', 'q']
    with pytest.raises(
            TFCheckpointError, match="tensor 'q' in ck has an unsupported"):
        reader.get('q')
    with pytest.raises(TFCheckpointError, match="'part' .* partitioned"):
        reader.get('part')


def test_size_inconsistent_with_shape():
    entry = tw._entry_proto(1, (3, ), 0, 0, 8, 0)
    with pytest.raises(TFCheckpointError, match="'t' of shape"):
        read_index(_index(('t', entry)))


# ---------------------------------------------------------------------------
# Writing and the accepted inputs
# ---------------------------------------------------------------------------


def _random_tensors():
    rng = np.random.default_rng(0)
    tensors = {}
    for dtype in map(np.dtype, [
            np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
            np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_,
            np.complex64, np.complex128
    ]):
        for shape in [(), (0, ), (3, 0, 2), (7, ), (2, 3, 5)]:
            size = int(np.prod(shape)) * dtype.itemsize
            raw = rng.integers(0, 256, size, np.uint8)
            value = raw > 99 if dtype == bool else raw.view(dtype)
            shape_name = 'x'.join(map(str, shape)) or 'scalar'
            tensors[f'dtypes/{dtype.name}/{shape_name}'] = value.reshape(shape)
    scope = 'xception_65/middle_flow/block1/unit_{}/xception_module/'
    for i in range(100):  # long keys sharing prefixes, several blocks
        name = scope.format(i) + f'separable_conv{i % 3}/BatchNorm/gamma'
        tensors[name] = rng.standard_normal(i + 1)
        tensors[name + '/Momentum'] = rng.standard_normal(3)
    tensors['big'] = rng.standard_normal((300, 257), np.float32)
    tensors['fortran_order'] = np.asfortranarray(rng.standard_normal((4, 6)))
    tensors['big_endian'] = np.arange(5, dtype='>i4')
    tensors['unicode/ünïcødé'] = np.float32(2.5)
    return tensors


@pytest.mark.parametrize('num_shards', [1, 3])
def test_round_trip_all_dtypes(tmp_path, num_shards):
    tensors = _random_tensors()
    prefix = tmp_path / 'out' / 'model.ckpt'
    write_checkpoint(prefix, tensors, num_shards=num_shards)
    shards = [
        f'model.ckpt.data-{i:05d}-of-{num_shards:05d}'
        for i in range(num_shards)
    ]  # and no temporary files left behind
    assert sorted(os.listdir(prefix.parent)) == shards + ['model.ckpt.index']
    assert _num_data_blocks(Path(f'{prefix}.index').read_bytes()) > 2
    loaded = load_checkpoint(prefix)
    assert list(loaded) == sorted(tensors, key=str.encode)
    for name, value in tensors.items():
        value = np.asarray(value)
        _assert_same(loaded[name], value.astype(value.dtype.newbyteorder('=')),
                     name)
        assert loaded[name].flags.writeable
        assert loaded[name].flags.c_contiguous


def test_write_rejects_unsupported_and_leaves_nothing(tmp_path):
    prefix = tmp_path / 'model.ckpt'
    with pytest.raises(ValueError, match="'s'"):
        write_checkpoint(prefix, {'a': np.zeros(2), 's': np.array(['x'])})
    with pytest.raises(ValueError):
        write_checkpoint(prefix, {'': np.zeros(2)})
    assert os.listdir(tmp_path) == []


def test_inputs_prefix_index_folder_and_archives(tmp_path):
    tensors = {'a/w': np.arange(6, dtype=np.float32), 'b': np.int64(4)}
    folder = tmp_path / 'deeplabv3_pascal_train_aug'  # as in the model zoo
    write_checkpoint(folder / 'model.ckpt', tensors)
    (folder / 'frozen_inference_graph.pb').write_bytes(os.urandom(5000))
    archives = [tmp_path / 'model.tar.gz', tmp_path / 'model.tar']
    for archive, mode in zip(archives, ('w:gz', 'w')):
        with tarfile.open(archive, mode) as tar:
            tar.add(folder, arcname=folder.name)
    with open_checkpoint(archives[0]) as reader:
        assert reader.prefix == f'{archives[0]}/{folder.name}/model.ckpt'
    sources = [folder / 'model.ckpt', f'{folder}/model.ckpt.index', folder]
    for src in sources + archives:
        loaded = load_checkpoint(src)
        assert list(loaded) == ['a/w', 'b']
        for name, value in tensors.items():
            _assert_same(loaded[name], np.asarray(value), name)


def test_folder_with_several_checkpoints(tmp_path):
    write_checkpoint(tmp_path / 'model.ckpt-100', {'x': np.float32(1)})
    write_checkpoint(tmp_path / 'model.ckpt-200', {'x': np.float32(2)})
    with pytest.raises(
            TFCheckpointError, match='several checkpoints.*model.ckpt-100'):
        open_checkpoint(tmp_path)
    (tmp_path / 'checkpoint').write_text(
        'model_checkpoint_path: "/train/model.ckpt-200"\n'
        'all_model_checkpoint_paths: "model.ckpt-100"\n')
    assert load_checkpoint(tmp_path)['x'] == 2


def test_missing_and_non_checkpoint_paths(tmp_path):
    with pytest.raises(TFCheckpointError, match='no checkpoint at'):
        open_checkpoint(tmp_path / 'nothing')
    with pytest.raises(
            TFCheckpointError, match=r'no checkpoint \(\*\.index file\)'):
        open_checkpoint(tmp_path)
    (tmp_path / 'notes.txt').write_text('hello')
    with pytest.raises(TFCheckpointError, match='not a checkpoint'):
        open_checkpoint(tmp_path / 'notes.txt')


def test_public_names_importable_as_before():
    # The reader and CRC-32C were one module with the writer; their names
    # stay where users and tools import them from. The writer (tests and
    # benchmarks only) is no longer installed: tools/fixtures/.
    import deeplabplus_mm.converters as converters
    for name in ('CheckpointReader', 'TFCheckpointError', 'crc32c',
                 'load_checkpoint', 'open_checkpoint', 'read_index'):
        assert name in converters.__all__ and hasattr(converters, name)
    assert converters.crc32c is crc.crc32c
    assert not hasattr(converters, 'write_checkpoint')


# ---------------------------------------------------------------------------
# CRC-32C
# ---------------------------------------------------------------------------


def _crc_bitwise(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_vectors():
    assert crc32c(b'123456789') == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b'\xff' * 32) == 0x62A8AB43
    assert crc32c(b'') == 0
    assert crc.mask_crc32c(0) == 0xA282EAD8  # as stored for empty tensors
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert crc.unmask_crc32c(crc.mask_crc32c(value)) == value


def test_crc32c_matches_bitwise_reference():
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, 5100, dtype=np.uint8).tobytes()
    lengths = list(range(300)) + rng.integers(300, 5001, 40).tolist()
    for i, n in enumerate(lengths + [1023, 1024, 1025, 2049, 5000]):
        chunk = data[i % 7:i % 7 + n]  # misaligned starts too
        assert crc32c(chunk) == _crc_bitwise(chunk), n
    # Around the lanes threshold (a partial block: the tree merge).
    data = rng.integers(0, 256, 40000, dtype=np.uint8).tobytes()
    for i, n in enumerate([crc._LANES_MIN - 1, crc._LANES_MIN, 39990]):
        chunk = data[i:i + n]
        assert crc32c(chunk) == _crc_bitwise(chunk), n
    data = data[:5100]
    arr = np.frombuffer(data, dtype=np.uint8)
    assert crc32c(arr[::2]) == _crc_bitwise(data[::2])
    assert crc32c(memoryview(data)) == crc32c(bytearray(data)) == crc32c(arr)
    assert crc32c(data[1000:], crc32c(data[:1000])) == crc32c(data)


def test_crc32c_large_buffer_against_chunked_reference():
    rng = np.random.default_rng(6)
    data = rng.integers(0, 256, 3 * (1 << 20) + 12345, dtype=np.uint8)
    chunk = 3001  # below the lanes threshold: position tables
    assert crc._SMALL < chunk < crc._LANES_MIN
    expected = _crc_bitwise(data[:chunk].tobytes())
    for start in range(chunk, data.size, chunk):
        expected = crc32c(data[start:start + chunk].tobytes(), expected)
    assert crc32c(data) == expected
    head = crc32c(data[3:3 + chunk].tobytes())
    assert crc32c(data[3:]) == crc32c(data[3 + chunk:], head)


def test_crc32c_block_merge_matches_lane_tree():
    # Whole blocks merge their lanes with per-lane tables, other lengths by
    # a tree of pairwise merges: both must give the same state.
    rng = np.random.default_rng(7)
    for _ in range(3):
        lanes = rng.integers(0, 2**32, crc._BLOCK // crc._LANE,
                             dtype=np.uint64).astype('<u4')
        assert crc._merge_block(lanes) == crc._merge_tree(lanes)


# ---------------------------------------------------------------------------
# Benchmark (runs and prints its summary; not timed)
# ---------------------------------------------------------------------------


def test_benchmark_read_quick(tmp_path):
    from conftest import run_tool
    proc = run_tool('tools/benchmarks/read.py', '--quick', '--subset', '12',
                    '--kinds', 'all', '--cache', str(tmp_path),
                    '--patience', '0', '--max-other-cores', '64',
                    timeout=600)
    out = proc.stdout
    assert 'SUMMARY: read every tensor of a ' in out, out
    rows = [ln.split('|')[1].strip() for ln in out.splitlines()
            if ln.startswith('| ours')]
    assert rows == ['ours: folder, all (21 tensors)',
                    'ours: tar.gz, all (21 tensors)',
                    'ours, verify=False: folder, all (21 tensors)'], out
    assert 'crc32c: ' in out and 'MB/s' in out

