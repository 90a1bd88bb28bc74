"""DensePredictionCellHead against TF DeepLab's rules (shared/tf_deeplab/
README.md, section Dense Prediction Cell; core/dense_prediction_cell.py and
dense_prediction_cell_branch5_top1_cityscapes.json): which branch reads
which, anisotropic rates (h, w) x 16 / output stride, concat order, the
projection, then the DeepLab v3+ decoder and logits. No TF reference run
exists for it here, so the reference is the cell written out with
``torch.nn.functional`` from the json, and an impulse shows the rate's
orientation."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

import deeplabplus_mm  # noqa: F401
from conftest import REPO
from deeplabplus_mm.models.decode_heads.dpc_head import \
    DensePredictionCellHead

# dense_prediction_cell_branch5_top1_cityscapes.json, written out
JSON = [{'kernel': 3, 'rate': [1, 6], 'op': 'conv', 'input': -1},
        {'kernel': 3, 'rate': [18, 15], 'op': 'conv', 'input': 0},
        {'kernel': 3, 'rate': [6, 3], 'op': 'conv', 'input': 1},
        {'kernel': 3, 'rate': [1, 1], 'op': 'conv', 'input': 0},
        {'kernel': 3, 'rate': [6, 21], 'op': 'conv', 'input': 0}]
CONFIG = 'configs/dpc/dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py'


def build(output_stride=16, in_channels=64, channels=16, c1=8,
          num_classes=5):
    torch.manual_seed(0)
    head = DensePredictionCellHead(
        in_channels=in_channels, in_index=1, channels=channels,
        output_stride=output_stride, c1_in_channels=c1, c1_channels=4,
        num_classes=num_classes, norm_cfg=dict(type='BN', eps=1e-5),
        align_corners=True)
    for m in head.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return head.eval()


def branch_rates(head):
    """The dilation of every branch's depthwise conv, in branch order."""
    return [getattr(head, f'branch{i}').depthwise_conv.conv.dilation
            for i in range(len(head.branch_inputs))]


def _conv_bn_relu(module, x, padding=0, dilation=1, groups=1):
    conv, bn = module.conv, module.bn
    y = F.conv2d(x, conv.weight, None, 1, padding, dilation, groups)
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                     False, 0.0, 1e-5)
    return F.relu(y)


def _separable(module, x, rate):
    x = _conv_bn_relu(module.depthwise_conv, x, padding=rate,
                      dilation=rate, groups=x.shape[1])
    return _conv_bn_relu(module.pointwise_conv, x)


def reference(head, low, x, multiplier):
    """build_cell + refine_by_decoder + logits, from the json."""
    branches = []
    for i, op in enumerate(JSON):
        inp = x if op['input'] < 0 else branches[op['input']]
        rate = tuple(r * multiplier for r in op['rate'])
        branches.append(_separable(getattr(head, f'branch{i}'), inp, rate))
    out = _conv_bn_relu(head.concat_projection, torch.cat(branches, 1))
    proj = _conv_bn_relu(head.feature_projection0, low)
    out = F.interpolate(out, proj.shape[2:], mode='bilinear',
                        align_corners=True)
    out = torch.cat([out, proj], 1)
    out = _separable(head.decoder_conv0, out, (1, 1))
    out = _separable(head.decoder_conv1, out, (1, 1))
    return F.conv2d(out, head.conv_seg.weight, head.conv_seg.bias)


@pytest.mark.parametrize('output_stride,multiplier', [(16, 1), (8, 2)])
@pytest.mark.parametrize('hw', [(9, 9), (8, 10)])
def test_cell_matches_reference(output_stride, multiplier, hw):
    head = build(output_stride)
    assert head.branch_inputs == [op['input'] for op in JSON]
    assert branch_rates(head) == [tuple(r * multiplier for r in op['rate'])
                                  for op in JSON]
    x = torch.randn(1, 64, *hw)
    low = torch.randn(1, 8, 4 * hw[0] - 3, 4 * hw[1] - 3)
    with torch.no_grad():
        out = head([low, x])
        ref = reference(head, low, x, multiplier)
    assert out.shape == (1, 5) + low.shape[2:]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_rate_is_height_then_width():
    """An impulse through branch 0's depthwise conv (rate (1, 6)) with only
    the kernel's top-left tap set lands 1 row and 6 columns away."""
    head = build()
    dw = head.branch0.depthwise_conv
    with torch.no_grad():
        dw.conv.weight.zero_()
        dw.conv.weight[:, :, 0, 0] = 1
        dw.bn.running_mean.zero_()
        dw.bn.running_var.fill_(1 - 1e-5)
        dw.bn.weight.fill_(1)
        dw.bn.bias.zero_()
        x = torch.zeros(1, 64, 20, 30)
        x[0, :, 5, 10] = 1
        y = dw(x)
    assert dw.conv.dilation == (1, 6) and dw.conv.padding == (1, 6)
    assert y[0, 0].nonzero().tolist() == [[5 + 1, 10 + 6]]


def test_zoo_config_structure():
    """The config's head: 5 branches on 2048 / 256 channels, 1280 -> 256
    projection, decoder on the 256-channel low-level feature, 19 classes,
    BN eps 1e-5, no image-level branch."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(f'{REPO}/{CONFIG}')
    with torch.device('meta'):
        head = MODELS.build(cfg.model.decode_head)
    ins = [getattr(head, f'branch{i}').depthwise_conv.conv.in_channels
           for i in range(5)]
    assert ins == [2048, 256, 256, 256, 256]
    assert head.concat_projection.conv.in_channels == 1280
    assert head.concat_projection.conv.out_channels == 256
    assert head.feature_projection0.conv.in_channels == 256
    assert head.decoder_conv0.depthwise_conv.conv.in_channels == 304
    assert head.conv_seg.out_channels == 19
    assert not hasattr(head, 'image_pooling')
    assert all(m.eps == 1e-5 for m in head.modules()
               if isinstance(m, _BatchNorm))
    assert branch_rates(head) == [(1, 6), (18, 15), (6, 3), (1, 1), (6, 21)]
    d8 = Config.fromfile(f'{REPO}/{CONFIG.replace("-d16_", "-d8_")}')
    assert d8.model.decode_head.output_stride == 8
    assert d8.model.backbone.output_stride == 8


def test_dropout_on_concat_not_after_projection():
    """TF: dropout (keep 0.9) on the concatenated branches, none after the
    projection: in training the projection's input is the eval one with
    about 10 % zeroed and the rest scaled by 1 / 0.9."""
    head = build()
    seen = []
    head.concat_projection.register_forward_pre_hook(
        lambda m, args: seen.append(args[0]))
    inputs = [torch.randn(1, 8, 33, 33), torch.randn(1, 64, 9, 9)]
    with torch.no_grad():
        head(inputs)  # eval: no dropout
        head.concat_dropout.train()  # BN stays in eval: same branches
        torch.manual_seed(0)
        head(inputs)
    ref, got = seen
    kept = got != 0
    dropped = (ref != 0) & ~kept
    assert 0.05 < dropped.float().sum() / (ref != 0).float().sum() < 0.15
    torch.testing.assert_close(got[kept], ref[kept] / 0.9)


@pytest.mark.parametrize('kwargs', [
    dict(branches=[(-1, (1, 1)), (2, (1, 1))]),  # reads a later branch
    dict(branches=[]), dict(output_stride=32)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        DensePredictionCellHead(in_channels=8, channels=4, num_classes=2,
                                **kwargs)
