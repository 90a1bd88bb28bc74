"""MobileNetV3TF (Large / Small / EdgeTPU) against TF's rules
(nets/mobilenet/mobilenet_v3.py, conv_blocks.py, mobilenet.py and
deeplab/core/feature_extractor.py): channels (the layer tables of
mobilenet_v3.py's docstring, with feature_extractor's halving of the last
block for segmentation), strides and rates per output stride, TF 'SAME'
padding of strided 5x5 convs, hard-swish and the squeeze-excite gating, the
end points. The expectations are literal numbers and plain
``torch.nn.functional`` references; the numbers of the whole network
against TensorFlow are in test_mobilenet_v3_parity.py."""
import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

import deeplabplus_mm  # noqa: F401  (registers MobileNetV3TF)
from deeplabplus_mm.archs import mobilenet_v3 as arch
from deeplabplus_mm.archs import state_shapes
from deeplabplus_mm.converters import CheckpointInfo, plan
from deeplabplus_mm.converters.naming import tf_shape
from deeplabplus_mm.converters.name_tables import MOBILENET_V3
from deeplabplus_mm.models.backbones.mobilenet_v3_tf import (MobileNetV3TF,
                                                             hard_swish)
from mmseg.registry import MODELS

# (expand width or None, SE width or 0, output channels) per block, from
# mobilenet_v3.py's layer tables; Large / Small: the last three blocks as
# feature_extractor.mobilenet_v3_*_seg halves them (outputs 160 -> 80 / 96
# -> 48, expansions 336, 480, 480 / 144, 288, 288), the final Conv_1 960 ->
# 480 / 576 -> 288.
LARGE = ([(None, 0, 16), (64, 0, 24), (72, 0, 24), (72, 24, 40),
          (120, 32, 40), (120, 32, 40), (240, 0, 80), (200, 0, 80),
          (184, 0, 80), (184, 0, 80), (480, 120, 112), (672, 168, 112)] +
         [(336, 88, 80), (480, 120, 80), (480, 120, 80)], 16, 480)
SMALL = ([(None, 8, 16), (72, 0, 24), (88, 0, 24), (96, 24, 40),
          (240, 64, 40), (240, 64, 40), (120, 32, 48), (144, 40, 48)] +
         [(144, 40, 48), (288, 72, 48), (288, 72, 48)], 16, 288)
EDGETPU = ([(None, 0, 16), (128, 0, 32)] + [(128, 0, 32)] * 3 +
           [(256, 0, 48)] + [(192, 0, 48)] * 3 + [(384, 0, 96)] * 4 +
           [(768, 0, 96)] + [(384, 0, 96)] * 3 + [(768, 0, 160)] +
           [(640, 0, 160)] * 3 + [(1280, 0, 192)], 32, 1280)
TABLES = {'large': LARGE, 'small': SMALL, 'edgetpu': EDGETPU}


def blocks(model):
    return [getattr(model, n) for n in model.layer_names
            if n.startswith('expanded_conv')]


def build(**kwargs):
    torch.manual_seed(0)
    model = MobileNetV3TF(**kwargs)
    model.init_weights()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.mark.parametrize('name', ['large', 'small', 'edgetpu'])
def test_channels_and_tf_variable_names(name):
    table, stem, final = TABLES[name]
    model = MobileNetV3TF(name)
    assert model.conv.conv.out_channels == stem
    assert model.conv_1.conv.out_channels == final
    got = []
    for block in blocks(model):
        se = block.squeeze_excite
        got.append((block.expand.conv.out_channels if block.expand else None,
                    se.squeeze.out_channels if se else 0,
                    block.project.conv.out_channels))
    assert got == table
    # the state_dict is what archs describes, and every entry is a TF
    # variable of the family's name table
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == state_shapes(arch.convs(name))
    names = {}
    for spec in arch.convs(name):
        scope = MOBILENET_V3.root_of(dict(arch=name)) + \
            MOBILENET_V3.table.to_tf(spec.path)[0]
        if spec.norm:
            leaf = 'depthwise_weights' if spec.depthwise else 'weights'
            names[f'{scope}/{leaf}'] = tf_shape(f'{scope}/{leaf}',
                                                 spec.weight_shape())
            names.update({f'{scope}/BatchNorm/{v}': (spec.out_channels, )
                          for v in ('gamma', 'beta', 'moving_mean',
                                    'moving_variance')})
        else:
            names[f'{scope}/weights'] = tf_shape(f'{scope}/weights',
                                                 spec.weight_shape())
            names[f'{scope}/biases'] = (spec.out_channels, )
    info = CheckpointInfo('mobilenet_v3', name, dict(arch=name), None, None,
                          False)
    entries, ignored = plan(names, shapes, info)  # raises on any misfit
    assert {e.tf_name for e in entries} - {None} == set(names)
    assert ignored == []


def test_edgetpu_depth_multiplier_075():
    """_make_divisible(n * 0.75, 8): 32 -> 24, 16 -> 16 (12 rounds up),
    48 -> 40 (36 rounds up), 96 -> 72, 160 -> 120, 192 -> 144, 1280 ->
    960; expansions 8 x / 4 x the rounded input."""
    model = MobileNetV3TF('edgetpu', depth_multiplier=0.75)
    outs = [b.project.conv.out_channels for b in blocks(model)]
    assert model.conv.conv.out_channels == 24
    assert outs == [16] + [24] * 4 + [40] * 4 + [72] * 8 + [120] * 4 + [144]
    assert model.conv_1.conv.out_channels == 960
    assert model.expanded_conv.expand is None  # 24 x 1 does not widen
    assert model.expanded_conv_1.expand.conv.out_channels == 128


# (layer scope, stride, rate) of the strided / atrous layers; all others
# stride 1, rate 1. Large: nominal strides at layer_1, 3, 5, 8, 14.
STRIDES_RATES = {
    ('large', 32): {'expanded_conv_1': (2, 1), 'expanded_conv_3': (2, 1),
                    'expanded_conv_6': (2, 1), 'expanded_conv_12': (2, 1)},
    ('large', 16): {'expanded_conv_1': (2, 1), 'expanded_conv_3': (2, 1),
                    'expanded_conv_6': (2, 1), 'expanded_conv_12': (1, 1),
                    'expanded_conv_13': (1, 2), 'expanded_conv_14': (1, 2)},
    ('large', 8): {'expanded_conv_1': (2, 1), 'expanded_conv_3': (2, 1),
                   'expanded_conv_6': (1, 1),
                   **{f'expanded_conv_{k}': (1, 2) for k in range(7, 12)},
                   'expanded_conv_12': (1, 2), 'expanded_conv_13': (1, 4),
                   'expanded_conv_14': (1, 4)},
    ('small', 16): {'expanded_conv': (2, 1), 'expanded_conv_1': (2, 1),
                    'expanded_conv_3': (2, 1), 'expanded_conv_8': (1, 1),
                    'expanded_conv_9': (1, 2), 'expanded_conv_10': (1, 2)},
    # fused blocks keep their strides; the depthwise blocks take the rate
    ('edgetpu', 16): {'expanded_conv_1': (2, 1), 'expanded_conv_5': (2, 1),
                      'expanded_conv_9': (2, 1), 'expanded_conv_17': (1, 1),
                      **{f'expanded_conv_{k}': (1, 2)
                         for k in range(18, 22)}},
}


@pytest.mark.parametrize('name,output_stride', sorted(STRIDES_RATES))
def test_strides_rates_and_feature_sizes(name, output_stride):
    model = build(arch=name, output_stride=output_stride)
    want = STRIDES_RATES[(name, output_stride)]
    for block_name in model.layer_names[1:-1]:
        block = getattr(model, block_name)
        strided = block.depthwise or block.expand  # fused: the kxk expand
        if strided is None:  # EdgeTPU's first block: project alone
            continue
        conv = strided.conv
        assert (conv.stride[0], conv.dilation[0]) == want.get(
            block_name, (1, 1)), block_name
        for one in (block.expand, block.project):  # 1x1: never dilated
            if one is not None:
                assert one.conv.dilation == (1, 1)
    # TF 'SAME': ceil(n / 2) per strided layer: 120 -> 60 -> 30 -> 15 -> 8
    # -> 4, 161 -> 81 -> 41 -> 21 -> 11 -> 6
    with torch.no_grad():
        out, = model(torch.randn(1, 3, 120, 161))
    size = {8: (15, 21), 16: (8, 11), 32: (4, 6)}[output_stride]
    assert tuple(out.shape[2:]) == size


def test_tf_same_padding_of_strided_5x5():
    """A 5x5 depthwise at stride 2 pads (1, 2) on even sizes and (2, 2) on
    odd ones (pad_total = (ceil(n/2) - 1) * 2 + 5 - n)."""
    model = build(arch='large')
    block = model.expanded_conv_3  # 5x5, stride 2, ReLU, squeeze-excite
    dw = block.depthwise
    for n, pads in ((16, (1, 2)), (15, (2, 2))):
        x = torch.randn(1, dw.conv.in_channels, n, n)
        ref = F.conv2d(F.pad(x, pads + pads), dw.conv.weight, None, 2, 0, 1,
                       dw.conv.groups)
        ref = F.batch_norm(ref, dw.bn.running_mean, dw.bn.running_var,
                           dw.bn.weight, dw.bn.bias, False, 0.0, 1e-3)
        with torch.no_grad():
            torch.testing.assert_close(dw(x), F.relu(ref))


def test_activations_and_squeeze_excite():
    x = torch.tensor([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0])
    torch.testing.assert_close(
        hard_swish(x), torch.tensor([0.0, 0.0, -1 / 3, 0.0, 2 / 3, 3.0,
                                     5.0]))
    model = build(arch='large')
    se = model.expanded_conv_4.squeeze_excite
    x = torch.randn(1, se.squeeze.in_channels, 7, 9)
    pooled = x.mean((2, 3), keepdim=True)
    gate = F.conv2d(F.relu(F.conv2d(pooled, se.squeeze.weight,
                                    se.squeeze.bias)),
                    se.excite.weight, se.excite.bias)
    gate = torch.clamp(gate + 3, 0, 6) * 0.16667  # TF's constant, not 1/6
    with torch.no_grad():
        torch.testing.assert_close(se(x), x * gate)
    # activations per layer: Large's stem and last blocks hard-swish,
    # EdgeTPU ReLU throughout
    assert model.conv.activation is hard_swish
    assert model.expanded_conv_2.depthwise.activation is F.relu
    assert model.expanded_conv_6.expand.activation is hard_swish
    assert model.expanded_conv_6.project.activation is None  # linear
    edgetpu = MobileNetV3TF('edgetpu')
    assert {m.activation for m in edgetpu.modules()
            if hasattr(m, 'activation')} == {F.relu, None}


def test_residuals_and_low_level_end_points():
    model = build(arch='large', output_stride=16, low_level_stride=8,
                  out_indices=(0, 7, -1))
    residual = [n for n in model.layer_names[1:-1]
                if getattr(model, n).residual]
    assert residual == ['expanded_conv', 'expanded_conv_2',
                        'expanded_conv_4', 'expanded_conv_5',
                        'expanded_conv_7', 'expanded_conv_8',
                        'expanded_conv_9', 'expanded_conv_11',
                        'expanded_conv_13', 'expanded_conv_14']
    edgetpu = MobileNetV3TF('edgetpu')
    assert not edgetpu.expanded_conv_13.residual  # residual=False in TF
    assert edgetpu.expanded_conv_12.residual
    # layer_7/depthwise_output: expanded_conv_5's depthwise (before SE)
    captured = {}
    model.expanded_conv_5.depthwise.register_forward_hook(
        lambda m, a, out: captured.setdefault('dw', out))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        low, layer_7, out = model(x)
    assert torch.equal(low, captured['dw']) and low.shape[1:] == (120, 8, 8)
    assert layer_7.shape[1:] == (40, 8, 8)
    assert out.shape[1:] == (480, 4, 4)
    # the block and the residual leave the input untouched
    block_in = torch.randn(1, 40, 8, 8)
    before = block_in.clone()
    with torch.no_grad():
        model.expanded_conv_4(block_in)
    assert torch.equal(block_in, before)


def test_registry_frozen_stages_norm_eval_with_cp():
    model = MODELS.build(dict(type='MobileNetV3TF', arch='small',
                              frozen_stages=2, norm_eval=True))
    model.train()
    assert not any(p.requires_grad for p in model.conv.parameters())
    assert not any(p.requires_grad
                   for p in model.expanded_conv.parameters())
    assert all(p.requires_grad for p in model.expanded_conv_1.parameters())
    assert not any(m.training for m in model.modules()
                   if isinstance(m, _BatchNorm))
    x = torch.randn(2, 3, 33, 33)
    plain, cp = build(arch='small'), build(arch='small', with_cp=True)
    cp.load_state_dict(plain.state_dict())
    grads = []
    for m in (plain, cp):
        m.train()
        xi = x.clone().requires_grad_()
        m(xi)[-1].sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(plain.expanded_conv_3.project.bn.running_mean,
                               cp.expanded_conv_3.project.bn.running_mean)


@pytest.mark.parametrize('kwargs', [
    dict(arch='medium'), dict(output_stride=4), dict(depth_multiplier=0),
    dict(out_indices=()), dict(out_indices=(18, )), dict(frozen_stages=18),
    dict(low_level_stride=2), dict(arch='edgetpu', low_level_stride=4),
    dict(out_indices=(0, -1))])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MobileNetV3TF(**kwargs)
