"""The converter's torch-free writer of torch.save's format: what it writes
loads with torch.load (weights_only, and memory-mapped) as the same tensors
and data torch.save would give, and nothing of it needs torch."""
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from deeplabplus_mm.converters import TorchFileWriter

ARRAYS = {
    'conv': np.random.default_rng(0).standard_normal(
        (8, 3, 3, 3)).astype(np.float32),
    'num_batches_tracked': np.zeros((), np.int64),  # 0-d stays 0-d
    'f64': np.linspace(-1, 1, 5),
    'f16': np.arange(4, dtype=np.float16),
    'i32': np.arange(-3, 3, dtype=np.int32),
    'u8': np.arange(7, dtype=np.uint8),
    'flags': np.array([True, False, True]),
    'empty': np.zeros((0, 4), np.float32),
    'big_endian': np.arange(6, dtype='>f4').reshape(2, 3),
    'transposed': np.arange(12, dtype=np.float32).reshape(3, 4).T,
}
META = dict(source='model.ckpt', step=30000, big=2**40, negative=-7,
            ratio=0.5, none=None, ok=True, no=False, names=['a', 'é'],
            pair=(1, 'x'), nested=dict(empty=[], d={}))


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp('fmt') / 'x.pth'
    with TorchFileWriter(path) as writer:
        refs = {k: writer.add_tensor(v) for k, v in ARRAYS.items()}
        writer.finish(dict(state_dict=refs, meta=META))
    return path


@pytest.mark.parametrize('kwargs', [dict(weights_only=True),
                                    dict(weights_only=True, mmap=True),
                                    dict(weights_only=False)])
def test_loads_as_torch_save_would(written, tmp_path, kwargs):
    ours = torch.load(written, **kwargs)
    reference = tmp_path / 'ref.pth'
    torch.save(dict(state_dict={
        k: torch.from_numpy(np.array(v, v.dtype.newbyteorder('=')))
        for k, v in ARRAYS.items()}, meta=META),
               reference)
    theirs = torch.load(reference, **kwargs)
    assert ours['meta'] == theirs['meta'] == META
    assert ours['state_dict'].keys() == ARRAYS.keys()
    for key, tensor in ours['state_dict'].items():
        want = theirs['state_dict'][key]
        assert tensor.dtype == want.dtype and tensor.shape == want.shape
        assert torch.equal(tensor, want), key
        assert tensor.is_contiguous()


def test_records_are_64_byte_aligned(written):
    with zipfile.ZipFile(written) as z:
        infos = z.infolist()
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        for info in infos:
            start = (info.header_offset + 30 + len(info.filename) +
                     len(info.extra))
            assert start % 64 == 0, info.filename
        names = {i.filename for i in infos}
    assert {'archive/data.pkl', 'archive/byteorder',
            'archive/version'} <= names


def test_writer_does_not_import_torch():
    code = ('from deeplabplus_mm.converters.torch_format import '
            'TorchFileWriter\n')
    # without the package's __init__ (which registers models with torch)
    code = ('import importlib.util, sys\n'
            "spec = importlib.util.find_spec('deeplabplus_mm')\n"
            "sys.modules['deeplabplus_mm'] = "
            'importlib.util.module_from_spec(spec)\n' + code +
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == 'False'


def test_rejects_what_torch_cannot_hold(tmp_path):
    with TorchFileWriter(tmp_path / 'x.pth') as writer:
        with pytest.raises(TypeError):
            writer.add_tensor(np.array(['a']))
        with pytest.raises(TypeError):
            writer.finish(dict(x=object()))
