"""BN folding for inference, and smoke runs of ``tools/benchmarks/``.

The benchmarks are not timed here: each runs with ``--quick`` and reduced
sizes and must exit 0 and print its summary line.
"""
import os.path as osp
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from mmcv.cnn import ConvModule
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import REPO, build_model, run_tool, tiny_config
from deeplabplus_mm.models.utils import fusable_conv_modules, fuse_conv_bn

ZOO_CONFIG = osp.join(
    REPO, 'configs/deeplabv3plus/'
    'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')
ATOL = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared machine, OpenMP threads waiting for
    each other make small models many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_segmentor(arch=65):
    cfg = Config.fromfile(ZOO_CONFIG)
    cfg.model.backbone.arch = arch
    cfg.model.backbone.init_cfg = None
    return build_model(cfg.model)


def randomize_norms_(model, seed=0):
    """BN statistics and affine parameters far from the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return model


def logits(model, x):
    with torch.no_grad():
        return model(x, mode='tensor')


def assert_no_bn_in_conv_modules(model):
    conv_modules = [m for m in model.modules() if isinstance(m, ConvModule)]
    assert conv_modules
    for m in conv_modules:
        assert not any(isinstance(c, _BatchNorm) for c in m.modules())
        assert not m.with_norm and isinstance(m.conv.bias, nn.Parameter)


def test_fuse_xception41_segmentor_65x65():
    torch.manual_seed(0)
    model = randomize_norms_(build_segmentor(41)).eval()
    x = torch.randn(2, 3, 65, 65)
    before = logits(model, x)
    assert before.abs().max() > 0.05  # a meaningful comparison
    num = len(fusable_conv_modules(model))
    assert fuse_conv_bn(model) is model
    after = logits(model, x)
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)
    assert_no_bn_in_conv_modules(model)
    # Every BN of the model sat in a ConvModule after its conv.
    assert num > 0
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    # A second call finds nothing left to fold and changes nothing.
    assert fusable_conv_modules(model) == []
    fuse_conv_bn(model)
    torch.testing.assert_close(logits(model, x), before, atol=ATOL, rtol=0)


def test_fuse_zoo_segmentor_with_tf_weights(tf_refs, tf_weights):
    """The zoo config with the TF references' variable values: realistic
    weight and BN statistics magnitudes."""
    from deeplabplus_mm.converters import convert, expected_state_shapes
    table = tf_weights.read_variables_tsv(
        osp.join(tf_refs, 'xception65_os16', 'variables.tsv'))
    tensors = {name: tf_weights.variable_value(name, shape, dtype)
               for name, shape, dtype, _ in table}
    model = build_segmentor(65).eval()
    state_dict, _, _ = convert(tensors, expected_state_shapes(model))
    model.load_state_dict(state_dict, strict=True)
    x = torch.from_numpy(
        np.load(osp.join(tf_refs, 'xception65_os16',
                         'input_129x129.npy'))).permute(0, 3, 1, 2)
    x = (x.float() * (2 / 255) - 1)[..., :65, :65].contiguous()
    before = logits(model, x)
    assert before.abs().max() > 0.1
    after = logits(fuse_conv_bn(model), x)
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)
    assert_no_bn_in_conv_modules(model)


def test_fuse_refuses_training_mode():
    model = build_segmentor(41)
    with pytest.raises(ValueError, match='eval'):
        fuse_conv_bn(model.train())
    # A single BN left in training mode is refused as well.
    model.eval()
    model.backbone.entry_flow.conv1_1.bn.train()
    with pytest.raises(ValueError, match='eval'):
        fuse_conv_bn(model)
    assert isinstance(model.backbone.entry_flow.conv1_1.bn, _BatchNorm)


def test_fuse_respects_conv_module_order_and_affine():
    torch.manual_seed(0)
    pre_norm = ConvModule(4, 6, 3, padding=1, norm_cfg=dict(type='BN'),
                          order=('norm', 'conv', 'act'))
    no_affine = ConvModule(6, 5, 1, norm_cfg=dict(type='BN', affine=False))
    with_bias = ConvModule(5, 3, 3, padding=2, dilation=2, bias=True,
                           norm_cfg=dict(type='BN'), act_cfg=None)
    depthwise = ConvModule(3, 3, 3, padding=1, groups=3,
                           norm_cfg=dict(type='BN'))
    model = randomize_norms_(
        nn.Sequential(pre_norm, no_affine, with_bias, depthwise), 1).eval()
    with torch.no_grad():
        with_bias.conv.bias.normal_()
        no_affine.bn.running_mean.normal_()
        no_affine.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        before = model(x)
        fuse_conv_bn(model)
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    # The pre-conv norm normalises the conv's *input*: it stays.
    assert isinstance(pre_norm.bn, _BatchNorm) and pre_norm.with_norm
    for m in (no_affine, with_bias, depthwise):
        assert isinstance(m.bn, nn.Identity) and not m.with_norm


@pytest.fixture(scope='module')
def calibrated_checkpoint(tmp_path_factory, synth_voc):
    """The demo config's model with random weights and BN statistics
    measured on random images (a random model with default statistics
    predicts one class everywhere; calibrated, its predictions vary over
    the image), saved as the converter does; and a config on the data."""
    folder = tmp_path_factory.mktemp('calibrated')
    config = tiny_config(folder, synth_voc, 1)
    model = build_model(config, seed=0)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average of the batches below
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, 97, 97) * 2 - 1, mode='tensor')
    ckpt = folder / 'calibrated.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    return config, str(ckpt)


def test_test_py_fuse_conv_bn_channels_last_same_predictions(
        tmp_path, synth_voc, calibrated_checkpoint):
    """tools/test.py --fuse-conv-bn --channels-last (FastInferenceHook)
    predicts what the plain model predicts."""
    config, ckpt = calibrated_checkpoint
    outs, logs = {}, {}
    for name, flags in (('plain', ()),
                        ('fast', ('--fuse-conv-bn', '--channels-last'))):
        outs[name] = tmp_path / name
        logs[name] = run_tool('tools/test.py', config, ckpt, '--out',
                              str(outs[name]), '--work-dir',
                              str(tmp_path / ('w' + name)), *flags).stdout
    segmentor = build_segmentor(41).eval()
    num = len(fusable_conv_modules(segmentor))
    assert f'FastInferenceHook: folded {num} BatchNorms into their convs, ' \
           'weights in channels_last' in logs['fast']
    assert 'FastInferenceHook' not in logs['plain']
    pngs = sorted(outs['plain'].glob('*.png'))
    assert len(pngs) == 3  # the val split
    agree = total = 0
    classes = set()
    for png in pngs:
        a = np.array(Image.open(png))
        b = np.array(Image.open(outs['fast'] / png.name))
        agree += (a == b).sum()
        total += a.size
        classes |= set(np.unique(a).tolist())
    assert len(classes) > 1  # not a constant prediction
    assert agree / total > 0.999  # argmax ties may flip under rounding
    miou = [re.findall(r'mIoU: (\d+\.\d+)', logs[k])[-1] for k in logs]
    assert miou[0] == miou[1]


def test_segmenter_fuse_and_channels_last(synth_voc, calibrated_checkpoint):
    from deeplabplus_mm.apis import Segmenter
    config, ckpt = calibrated_checkpoint
    plain = Segmenter(config, ckpt)
    fast = Segmenter(config, ckpt, fuse_conv_bn=True, channels_last=True)
    assert not any(isinstance(m, _BatchNorm) for m in fast.model.modules())
    conv = fast.model.backbone.entry_flow.conv1_1.conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 70, 90)
    # Logits of up to ~20 here: float32 rounding is relative.
    torch.testing.assert_close(logits(fast.model, x), logits(plain.model, x),
                               atol=ATOL, rtol=1e-5)
    image = osp.join(synth_voc, 'JPEGImages', 'synth_00008.jpg')
    a, b = plain(image), fast(image)
    assert a.shape == b.shape and len(np.unique(a)) > 1
    assert (a == b).mean() > 0.999


# --------------------------------------------------------------------------
# Benchmarks: they run and print their summary (not timed).
# --------------------------------------------------------------------------

# No waiting for a quiet machine, one thread (see ``one_thread``).
NO_WAIT = ('--patience', '0', '--threads', '1')


def run_benchmark(name, *args):
    proc = run_tool(osp.join('tools', 'benchmarks', name), *args,
                    timeout=300)
    assert proc.returncode == 0
    return proc.stdout


def test_benchmark_model_quick():
    out = run_benchmark('model.py', '--quick', '--size', '65', '--cases',
                        'xception41-d16', '--modes', 'eval', '--variants',
                        'base,fuse+cl', '--warmup', '0', '--repeats', '1',
                        *NO_WAIT)
    assert 'SUMMARY: xception41-d16 eval ' in out
    assert 'FlopAnalyzer counts 1 for one multiply-add -> MACs' in out
    # The table has a row per variant with its achieved GFLOP/s.
    rows = [ln for ln in out.splitlines()
            if ln.startswith('| xception41-d16 | eval |')]
    assert [r.split('|')[3].strip() for r in rows] == ['base', 'fuse+cl']
    assert 'machine: ' in out and 'FAILED' not in out


def test_benchmark_tta_quick():
    out = run_benchmark('tta.py', '--quick', '--size', '65', *NO_WAIT)
    assert 'SUMMARY: xception41 65x65: TTA' in out
    assert 'overhead ratio' in out and 'batched flip / sequential' in out
    assert "mmseg's SegTTAModel" in out and 'AccumulatingSegTTAModel' in out
    assert "TF's protocol (TFMultiScaleSegTTAModel)" in out
    assert 'network inputs 33, 49, 65, 81, 97, 113' in out  # own sizes


def test_benchmark_convert_quick(tf_refs):
    out = run_benchmark('convert.py', '--quick', *NO_WAIT)
    assert 'SUMMARY: conversion' in out and 'whole CLI' in out
    assert 'skipped' in out or 'TensorFlow 2' in out


def test_benchmark_data_quick(tmp_path):
    out = run_benchmark('data.py', '--quick', '--voc-images', '8',
                        '--batches', '2', '--coco-images', '12',
                        '--workers', '0,1', '--cache', str(tmp_path),
                        *NO_WAIT)
    assert 'SUMMARY: train pipeline images/s: 0 workers' in out
    assert 'on-the-fly rasterisation' in out


def test_benchmark_gpu_quick():
    out = run_benchmark('gpu.py', '--quick', '--steps', '1')
    if torch.cuda.is_available():
        assert 'SUMMARY: cuda:' in out
    else:
        assert out.strip() == 'skipped: no GPU'


def test_benchmark_gpu_code_path_on_cpu():
    """The GPU benchmark's steps (fp32 and bf16 autocast, channels_last)
    run on the CPU at a tiny size: the code path works where no GPU is."""
    out = run_benchmark('gpu.py', '--device', 'cpu', '--size', '65',
                        '--batch', '2', '--warmup', '1', '--steps', '1')
    for variant in ('fp32', 'fp32+cl', 'bf16', 'bf16+cl'):
        assert f'| {variant} ' in out
    assert 'SUMMARY: cpu: bf16' in out
