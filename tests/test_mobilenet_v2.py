"""MobileNetV2TF against TF DeepLab's rules (shared/tf_deeplab/README.md,
section MobileNetV2): channels at depth multiplier 1.0 and 0.5, strides and
rates at output stride 8 / 16 / 32, TF 'SAME' padding, the block, the end
points. The expectations are the README's literal numbers and a plain
``torch.nn.functional`` reference, not read back from the implementation;
the numbers of the whole network against TensorFlow are in
test_tf_parity.py."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

import deeplabplus_mm  # noqa: F401  (registers MobileNetV2TF)
import tf_names
from deeplabplus_mm.converters import CheckpointInfo, plan
from deeplabplus_mm.models.backbones.mobilenet_v2_tf import MobileNetV2TF
from deeplabplus_mm.models.utils.tf_padding import tf_same_pad
from mmseg.registry import MODELS

# README item 7: (block, stride, rate) of every block that differs from its
# nominal stride 1 / rate 1 (nominal strides 2: Conv, expanded_conv_1, _3,
# _6, _13).
STRIDES_RATES = {
    32: {'expanded_conv_1': (2, 1), 'expanded_conv_3': (2, 1),
         'expanded_conv_6': (2, 1), 'expanded_conv_13': (2, 1)},
    16: {'expanded_conv_1': (2, 1), 'expanded_conv_3': (2, 1),
         'expanded_conv_6': (2, 1), 'expanded_conv_13': (1, 1),
         **{f'expanded_conv_{k}': (1, 2) for k in (14, 15, 16)}},
    8: {'expanded_conv_1': (2, 1), 'expanded_conv_3': (2, 1),
        'expanded_conv_6': (1, 1),
        **{f'expanded_conv_{k}': (1, 2) for k in range(7, 14)},
        **{f'expanded_conv_{k}': (1, 4) for k in (14, 15, 16)}},
}
BLOCKS = ['expanded_conv'] + [f'expanded_conv_{k}' for k in range(1, 17)]


def build(**kwargs):
    torch.manual_seed(0)
    model = MobileNetV2TF(**kwargs)
    model.init_weights()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.mark.parametrize('depth_multiplier', [1.0, 0.5])
def test_channels_and_tf_variable_names(depth_multiplier):
    """Every parameter is one of TF's variables (names and shapes from the
    README's channel lists), and every TF variable has its parameter."""
    model = MobileNetV2TF(depth_multiplier=depth_multiplier)
    depths = tf_names.MOBILENET_V2_DEPTHS[depth_multiplier]
    assert [model.conv.conv.out_channels] + [
        getattr(model, b).project.conv.out_channels for b in BLOCKS
    ] == depths
    assert model.expanded_conv.expand is None  # block 0: no expand conv
    widths = [getattr(model, b).depthwise.conv.in_channels
              for b in BLOCKS[1:]]
    assert widths == [6 * c for c in depths[1:-1]]
    if depth_multiplier == 0.5:
        assert widths[:4] == [48, 72, 72, 96] and widths[-1] == 480
    names = dict(tf_names.mobilenet_v2(depth_multiplier))
    info = CheckpointInfo('mobilenet_v2', 'mobilenet_v2',
                          dict(depth_multiplier=depth_multiplier), None,
                          None, False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    entries, ignored = plan(names, shapes, info)  # raises on any misfit
    assert {e.tf_name for e in entries} - {None} == set(names)
    assert ignored == []


@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_strides_rates_and_feature_sizes(output_stride):
    model = build(output_stride=output_stride, out_indices=(0, 4, -1))
    for block in BLOCKS:
        dw = getattr(model, block).depthwise.conv
        want = STRIDES_RATES[output_stride].get(block, (1, 1))
        assert (dw.stride[0], dw.dilation[0]) == want, block
        # 1x1 convs are never dilated
        for name in ('expand', 'project'):
            conv = getattr(getattr(model, block), name)
            if conv is not None:
                assert conv.conv.dilation == (1, 1)
    assert (model.conv.conv.stride, model.conv.conv.padding) == ((2, 2),
                                                                 (0, 0))
    # 120 -> 60 -> 30 -> 15 -> 8 -> 4 (SAME: ceil), 160 -> 80 -> 40 -> 20
    # -> 10 -> 5; the low-level feature (layer_4/depthwise_output) at 4
    with torch.no_grad():
        low, layer_4, out = model(torch.randn(1, 3, 120, 160))
    size = {8: (15, 20), 16: (8, 10), 32: (4, 5)}[output_stride]
    assert tuple(out.shape) == (1, 320) + size
    assert tuple(low.shape) == (1, 144, 30, 40)
    assert tuple(layer_4.shape) == (1, 24, 30, 40)  # expanded_conv_2 out


@pytest.mark.parametrize('size,pads', [(120, (0, 1)), (129, (1, 1)),
                                       (15, (1, 1)), (20, (0, 1)),
                                       (1, (1, 1))])
def test_tf_same_padding_of_strided_3x3(size, pads):
    """pad_total = max((ceil(n/2) - 1) * 2 + 3 - n, 0), top/left =
    total // 2 (README item 6)."""
    x = torch.randn(1, 2, size, size + 1)
    padded = tf_same_pad(x, 3, 2)
    wpads = (0, 1) if (size + 1) % 2 == 0 else (1, 1)
    assert padded.shape[2] == size + sum(pads)
    assert padded.shape[3] == size + 1 + sum(wpads)
    torch.testing.assert_close(
        padded, F.pad(x, (wpads[0], wpads[1], pads[0], pads[1])))


def _reference_block(block, x):
    """conv_blocks.expanded_conv with functional ops and TF's padding."""
    def conv_bn(module, x, act, pad=None):
        conv, bn = module.conv, module.bn
        if pad is not None:
            x = F.pad(x, pad)
        y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding,
                     conv.dilation, conv.groups)
        y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight,
                         bn.bias, False, 0.0, 1e-3)
        return F.relu6(y) if act else y

    h = conv_bn(block.expand, x, True) if block.expand is not None else x
    stride = block.depthwise.conv.stride[0]
    pad = None
    if stride == 2:
        n_h, n_w = h.shape[2:]
        pad = (0 if n_w % 2 == 0 else 1, 1, 0 if n_h % 2 == 0 else 1, 1)
    h = conv_bn(block.depthwise, h, True, pad)
    h = conv_bn(block.project, h, False)
    return h + x if block.residual else h


@pytest.mark.parametrize('block', ['expanded_conv', 'expanded_conv_1',
                                   'expanded_conv_2', 'expanded_conv_15'])
@pytest.mark.parametrize('hw', [(15, 20), (17, 17)])
def test_block_matches_reference(block, hw):
    model = build(output_stride=16)
    module = getattr(model, block)
    x = torch.randn(1, module.depthwise.conv.in_channels
                    if module.expand is None else
                    module.expand.conv.in_channels, *hw)
    x_before = x.clone()
    with torch.no_grad():
        out, depthwise = module(x)
        ref = _reference_block(module, x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(x, x_before)  # the shortcut input is untouched
    assert depthwise.min() >= 0 and depthwise.max() <= 6  # ReLU6 output
    assert module.residual == (block in ('expanded_conv_2',
                                         'expanded_conv_15'))


def test_output_is_linear_and_bn_eps():
    model = build()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 65))[-1]
    assert out.min() < 0  # no activation after the last project (+ input)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 3e-3 for m in bns)
    acts = {type(m).__name__ for m in model.modules()
            if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))}
    assert acts == {'ReLU6'}


@pytest.mark.parametrize('low_level_stride,block,channels',
                         [(4, 'expanded_conv_2', 144),
                          (8, 'expanded_conv_5', 192),
                          (16, 'expanded_conv_12', 576)])
def test_low_level_end_points(low_level_stride, block, channels):
    """networks_to_feature_maps: layer_4 / layer_7 / layer_14 depthwise
    output (after BN and ReLU6)."""
    model = build(low_level_stride=low_level_stride)
    captured = {}
    getattr(model, block).depthwise.register_forward_hook(
        lambda m, a, out: captured.setdefault('dw', out))
    with torch.no_grad():
        low, _ = model(torch.randn(1, 3, 64, 64))
    assert low.shape[1] == channels
    assert torch.equal(low, captured['dw'])


def test_registry_frozen_stages_norm_eval_with_cp():
    mmseg_v2 = MODELS.build(dict(type='MobileNetV2'))
    ours = MODELS.build(dict(type='MobileNetV2TF', frozen_stages=3,
                             norm_eval=True))
    assert type(mmseg_v2).__name__ == 'MobileNetV2'  # both registered
    ours.train()
    for name in ('conv', 'expanded_conv', 'expanded_conv_1'):
        assert not any(p.requires_grad
                       for p in getattr(ours, name).parameters())
    assert all(p.requires_grad for p in ours.expanded_conv_2.parameters())
    assert not any(m.training for m in ours.modules()
                   if isinstance(m, _BatchNorm))
    # gradient checkpointing: same outputs and gradients
    x = torch.randn(2, 3, 33, 33)
    plain, cp = build(), build(with_cp=True)
    cp.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, cp):
        model.train()
        xi = x.clone().requires_grad_()
        model(xi)[-1].sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(plain.expanded_conv_5.project.bn.running_mean,
                               cp.expanded_conv_5.project.bn.running_mean)


@pytest.mark.parametrize('kwargs', [
    dict(output_stride=4), dict(depth_multiplier=0), dict(out_indices=()),
    dict(out_indices=(19, )), dict(frozen_stages=19),
    dict(low_level_stride=2)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MobileNetV2TF(**kwargs)
