"""tools/deployment/export_onnx.py: ONNX Runtime (CPU) gives TensorFlow's
logits on the TF reference case (converted with our converter), static and
dynamic exports of every backbone family and output stride agree with
PyTorch, and bad input fails with one clear line and nothing written."""
import copy
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import DEMO_CONFIG, REPO, build_model, run_tool

# One torch thread in the tools (see ``one_thread``).
ONE_THREAD = dict(OMP_NUM_THREADS='1')
from test_fuse_and_benchmarks import randomize_norms_
from test_tf_parity import (ZOO_CONFIG, assert_close_to_tf,  # noqa: F401
                            load_case, tf_variables, zoo_model)

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

EXPORT = 'tools/deployment/export_onnx.py'
CONFIGS = osp.join(REPO, 'configs', 'deeplabv3plus')


# one torch thread in this process (conftest.one_thread)
pytestmark = pytest.mark.usefixtures('one_thread')


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options,
                                providers=['CPUExecutionProvider'])


def ort_outputs(sess, images_rgb):
    """Run the graph on uint8 RGB NHWC images; outputs as numpy."""
    x = np.ascontiguousarray(
        images_rgb.astype(np.float32).transpose(0, 3, 1, 2))
    return sess.run(None, {'image': x})


def metadata(path):
    model = onnx.load(str(path))
    return model, json.loads(
        {p.key: p.value for p in model.metadata_props}['deeplabplus_mm'])


@pytest.fixture(scope='module')
def zoo_checkpoint(zoo_model, tmp_path_factory):  # noqa: F811
    """weights.py values through our converter, saved as
    tools/convert_tf_checkpoint.py saves them."""
    path = tmp_path_factory.mktemp('zoo') / 'xception65_tf.pth'
    torch.save(dict(state_dict=zoo_model.state_dict(),
                    meta=dict(variant='xception_65')), path)
    return str(path)


def test_static_export_matches_tensorflow_129(tf_refs, zoo_checkpoint,
                                              tmp_path):
    """A fixed 129x129 graph, simplified by --simplify-check (which also
    compares it with PyTorch) and written with standard operators only."""
    out = tmp_path / 'x65_129.onnx'
    log = run_tool(EXPORT, ZOO_CONFIG, zoo_checkpoint, str(out), '--shape',
                   '129', '129', '--simplify-check', env=ONE_THREAD).stdout
    assert f'wrote {out}' in log
    assert 'check 129x129: ONNX Runtime vs PyTorch max |diff|' in log
    model, meta = metadata(out)
    assert {o.domain for o in model.opset_import} <= {'', 'ai.onnx'}
    # ONNX Runtime's basic level folds BN into the convs
    assert 'BatchNormalization' not in {n.op_type for n in model.graph.node}
    sess = session(out)
    assert sess.get_inputs()[0].shape == [1, 3, 129, 129]
    image = load_case(tf_refs, 'input', '129x129')
    logits, = ort_outputs(sess, image)
    assert logits.shape == (1, 21, 129, 129)
    assert_close_to_tf(logits.transpose(0, 2, 3, 1),
                       load_case(tf_refs, 'upsampled', '129x129'),
                       'ONNX Runtime 129x129')
    assert meta['input']['channel_order'] == 'RGB'
    assert meta['input']['mean'] == [127.5] * 3
    assert meta['input']['std'] == [127.5] * 3
    # the zoo config pads test images to 513x513 with what normalises to 0
    assert meta['input']['test_pad']['size'] == [513, 513]
    assert meta['input']['test_pad']['raw_value'] == [127.5] * 3
    assert meta['dataset_meta']['classes'][0] == 'background'
    assert len(meta['dataset_meta']['palette']) == 21


def test_dynamic_export_matches_tensorflow_at_other_sizes(
        tf_refs, zoo_checkpoint, tmp_path):
    """Traced at 97x113, run at 120x160 and 129x129 (and a batch of 2):
    the image pooling's broadcast and every resize follow the input."""
    out = tmp_path / 'x65_dynamic.onnx'
    run_tool(EXPORT, ZOO_CONFIG, zoo_checkpoint, str(out), '--shape', '97',
             '113', '--dynamic', '--fuse-conv-bn', '--argmax', env=ONE_THREAD)
    model, meta = metadata(out)
    assert meta['traced_shape'] == [97, 113] and meta['dynamic']
    ops = {n.op_type for n in model.graph.node}
    assert 'BatchNormalization' not in ops  # --fuse-conv-bn
    sess = session(out)
    assert sess.get_inputs()[0].shape == ['batch', 3, 'height', 'width']
    assert [o.name for o in sess.get_outputs()] == ['logits', 'labels']
    for size in ('120x160', '129x129'):
        image = load_case(tf_refs, 'input', size)
        logits, labels = ort_outputs(sess, image)
        assert logits.shape[2:] == image.shape[1:3]
        assert_close_to_tf(logits.transpose(0, 2, 3, 1),
                           load_case(tf_refs, 'upsampled', size),
                           f'ONNX Runtime {size}, dynamic')
        np.testing.assert_array_equal(labels, logits.argmax(1))
    # a batch: the image and its mirror
    image = load_case(tf_refs, 'input', '120x160')
    logits, _ = ort_outputs(sess, np.concatenate([image, image[:, :, ::-1]]))
    ref = load_case(tf_refs, 'upsampled', '120x160')
    assert_close_to_tf(logits[:1].transpose(0, 2, 3, 1), ref, 'batch[0]')
    unflipped = logits[1:, :, :, ::-1].transpose(0, 2, 3, 1)
    assert np.abs(unflipped - ref).max() > 1e-3  # the mirror is another image
    assert not np.allclose(logits[0], logits[1])


def _variant_model(config, arch=None, output_stride=None):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    if arch:
        cfg.model.backbone.arch = arch
    if output_stride:
        cfg.model.backbone.output_stride = output_stride
    return randomize_norms_(build_model(cfg.model, seed=0)).eval()


X41 = 'deeplabv3plus_xception41-d16_4xb4-30k_voc12aug-513x513.py'
R101_D8 = 'deeplabv3plus_r101-d8_4xb4-30k_voc12aug-513x513.py'
# TF 'SAME' padding at stride 2 (tf_same_pad, shared by MobileNetV2/V3,
# EdgeTPU and ResNet-v1-beta) in a TorchScript export with dynamic sizes
MNV2 = '../deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py'


@pytest.mark.parametrize('config,arch,output_stride,dynamic,opset', [
    (X41, 41, 8, False, 17),
    (X41, 41, 32, True, None),
    (R101_D8, None, None, True, None),
    (MNV2, None, None, True, 17),
], ids=['xception41-os8-opset17', 'xception41-os32-dynamic',
        'r101-d8-dynamic', 'mobilenetv2-dynamic-opset17'])
def test_export_variants_match_pytorch(tmp_path, config, arch,
                                       output_stride, dynamic, opset):
    """ONNX Runtime vs mmseg's own encode_decode (normalised input, logits
    resized to the input): 65x65, and a batch of 2 at 49x81 for dynamic
    exports. Opset 17 goes through torch's TorchScript exporter (for older
    runtimes, e.g. TensorRT 8), the others through torch.export. (OS 16:
    the TF parity tests above and tests/test_video_infer.py.)"""
    from deeplabplus_mm.apis.export import DeployableSegmentor, export_onnx
    from deeplabplus_mm.models.utils import prepare_for_inference
    model = _variant_model(config, arch, output_stride)
    if output_stride:
        assert model.backbone.output_stride == output_stride
    reference = copy.deepcopy(model)
    # BN folded (also: a faster export), ResNet's plain conv/BN pairs too
    assert prepare_for_inference(model, fuse=True) > 0
    out = tmp_path / 'variant.onnx'
    meta = export_onnx(DeployableSegmentor(model, argmax=True), str(out),
                       (65, 65), dynamic, opset)
    written = {o.domain: o.version for o in onnx.load(out).opset_import}['']
    assert meta['opset'] == written and (opset is None or written == opset)
    sess = session(out)
    sizes = [(1, 65, 65), (2, 49, 81)] if dynamic else [(1, 65, 65)]
    pre = reference.data_preprocessor
    gen = torch.Generator().manual_seed(1)
    for n, h, w in sizes:
        image = torch.rand(n, 3, h, w, generator=gen) * 255
        with torch.no_grad():
            expected = reference.encode_decode(
                (image - pre.mean) / pre.std,
                [dict(img_shape=(h, w), pad_shape=(h, w))] * n).numpy()
        logits, labels = sess.run(None, {'image': image.numpy()})
        assert logits.shape == expected.shape == (
            n, reference.decode_head.num_classes, h, w)
        scale = np.abs(expected).max()
        assert scale > 0.1  # a meaningful comparison
        diff = np.abs(logits - expected).max()
        assert diff <= 1e-4 * max(1.0, scale), f'{h}x{w}: {diff:.3g}'
        np.testing.assert_array_equal(labels, logits.argmax(1))


@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    model = build_model(DEMO_CONFIG, seed=0)
    path = tmp_path_factory.mktemp('demo') / 'x41.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(variant='xception_41')), path)
    return str(path)


def test_checkpoint_that_does_not_fit_names_keys(tmp_path, demo_checkpoint):
    from tools.deployment.export_onnx import run_export
    out = tmp_path / 'out.onnx'
    # xception41 weights for the xception65 config
    proc = run_tool(EXPORT, ZOO_CONFIG, demo_checkpoint, str(out),
                    check=False, env=ONE_THREAD)
    assert proc.returncode != 0
    error = proc.stdout.strip().splitlines()[-1]
    assert error.startswith(f'error: {demo_checkpoint} does not fit')
    assert '288 missing keys: backbone.middle_flow.block1.unit_9.' in error
    # the other way round: keys left over
    x65 = tmp_path / 'x65.pth'
    torch.save(build_model(ZOO_CONFIG).state_dict(), x65)
    with pytest.raises(ValueError,
                       match=r'288 unexpected keys: backbone\.middle_flow'):
        run_export(DEMO_CONFIG, str(x65), str(out))
    # and a file that is no checkpoint at all
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match=f'{bad}: not a readable checkpoint'):
        run_export(DEMO_CONFIG, str(bad), str(out))
    assert sorted(os.listdir(tmp_path)) == ['bad.pth', 'x65.pth']


def test_unwritable_output_and_bad_opset(tmp_path, demo_checkpoint):
    from tools.deployment.export_onnx import run_export
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    out = blocker / 'model.onnx'
    proc = run_tool(EXPORT, DEMO_CONFIG, demo_checkpoint, str(out),
                    check=False, env=ONE_THREAD)
    assert proc.returncode != 0
    assert f'error: {out}: cannot write there' in proc.stdout
    with pytest.raises(OSError, match=f'{tmp_path}: is a folder'):
        run_export(DEMO_CONFIG, demo_checkpoint, str(tmp_path))
    for opset in (10, 99):
        with pytest.raises(ValueError, match=f'opset {opset}: the model '
                           'cannot be exported with it'):
            run_export(DEMO_CONFIG, demo_checkpoint,
                       str(tmp_path / 'm.onnx'), opset=opset)
    assert sorted(os.listdir(tmp_path)) == ['a_file']


def test_failed_export_leaves_nothing_half_written(tmp_path, monkeypatch):
    """A failure after the exporter started writing: the previous file is
    untouched and no temp file is left."""
    from deeplabplus_mm.apis import export
    model = export.DeployableSegmentor(build_model(DEMO_CONFIG).eval())
    out = tmp_path / 'model.onnx'
    out.write_bytes(b'previous export')

    def broken(model, path, *args):
        with open(path, 'wb') as f:
            f.write(b'half an ONNX file')
        raise RuntimeError('the exporter crashed')

    monkeypatch.setattr(export, '_export_to', broken)
    with pytest.raises(RuntimeError, match='crashed'):
        export.export_onnx(model, str(out), (65, 65))
    assert out.read_bytes() == b'previous export'
    assert os.listdir(tmp_path) == ['model.onnx']


def test_package_imports_and_trains_without_onnx():
    """onnx, onnxruntime and onnxscript are optional: with them blocked, the
    package imports, a training step runs, and --onnx says what to
    install."""
    code = f"""
import sys
for name in ('onnx', 'onnxruntime', 'onnxscript'):
    sys.modules[name] = None  # import raises ImportError
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
sys.path.insert(0, {osp.join(REPO, 'tests')!r})
from conftest import DEMO_CONFIG, build_model
import deeplabplus_mm.apis as apis
model = build_model(DEMO_CONFIG, seed=0).train()
sample = SegDataSample(metainfo=dict(img_shape=(33, 33), pad_shape=(33, 33)))
sample.gt_sem_seg = PixelData(data=torch.randint(0, 21, (1, 33, 33)))
losses = model.loss(torch.randn(2, 3, 33, 33), [sample, sample])
sum(v for k, v in losses.items() if 'loss' in k).backward()
try:
    apis.OnnxSegmenter(DEMO_CONFIG, 'model.onnx')
except ImportError as e:
    print('ImportError:', e)
"""
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          env=dict(os.environ, **ONE_THREAD),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'ImportError: --onnx needs onnxruntime: pip install -r ' \
        'requirements/onnx.txt' in proc.stdout


def test_benchmark_deploy_quick():
    """tools/benchmarks/deploy.py runs and prints its table and summary
    (not timed here)."""
    out = run_tool('tools/benchmarks/deploy.py', '--quick', '--case',
                   'xception41-d16', '--size', '65', '--warmup', '0',
                   '--repeats', '1', '--patience', '0', '--max-other-cores',
                   '64', '--threads', '1', timeout=300, env=ONE_THREAD).stdout
    rows = [ln.split('|')[1].strip() for ln in out.splitlines()
            if ln.startswith('| pytorch') or ln.startswith('| onnxruntime')]
    assert rows == ['pytorch base', 'pytorch fuse+cl', 'onnxruntime']
    assert 'SUMMARY: xception41-d16 65x65, s/image: pytorch base ' in out
    assert 'ONNX Runtime / fastest PyTorch (pytorch ' in out
    assert 'ONNX Runtime vs PyTorch logits: max |diff| ' in out
    assert 'machine: ' in out and 'FAILED' not in out
