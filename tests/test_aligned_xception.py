"""AlignedXception against TensorFlow DeepLab's rules (shared/tf_deeplab
README, "TF details a PyTorch port must reproduce", items 3-7).

Every expectation here is written from TF's tables and rules
(``xception.py``: ``xception_41``/``65``/``71``, ``xception_module``,
``separable_conv2d_same``/``fixed_padding``, ``stack_blocks_dense``), not read
back from the implementation. The reference unit is plain
``torch.nn.functional`` with TF's explicit padding arithmetic.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

import deeplabplus_mm  # noqa: F401  (registers AlignedXception)
from deeplabplus_mm.archs.xception import ARCH_SETTINGS
from deeplabplus_mm.models.backbones.aligned_xception import (
    AlignedXception, XceptionModule)
from mmseg.registry import MODELS

BACKBONE_EPS = 1e-3  # xception_arg_scope(batch_norm_epsilon=1e-3)
BACKBONE_MOMENTUM = 3e-4  # decay 0.9997

# --------------------------------------------------------------------------
# TF's block tables, written out from core/xception.py.
# (scope, depth_list, num_units, stride, skip_connection_type,
#  activation_fn_in_separable_conv)
# --------------------------------------------------------------------------
_ENTRY_41_65 = [
    ('entry_flow/block1', (128, 128, 128), 1, 2, 'conv', False),
    ('entry_flow/block2', (256, 256, 256), 1, 2, 'conv', False),
    ('entry_flow/block3', (728, 728, 728), 1, 2, 'conv', False),
]
_ENTRY_71 = [
    ('entry_flow/block1', (128, 128, 128), 1, 2, 'conv', False),
    ('entry_flow/block2', (256, 256, 256), 1, 1, 'conv', False),
    ('entry_flow/block3', (256, 256, 256), 1, 2, 'conv', False),
    ('entry_flow/block4', (728, 728, 728), 1, 1, 'conv', False),
    ('entry_flow/block5', (728, 728, 728), 1, 2, 'conv', False),
]
_EXIT = [
    ('exit_flow/block1', (728, 1024, 1024), 1, 2, 'conv', False),
    ('exit_flow/block2', (1536, 1536, 2048), 1, 1, 'none', True),
]
TF_BLOCKS = {
    41: _ENTRY_41_65 + [('middle_flow/block1', (728, ) * 3, 8, 1, 'sum',
                         False)] + _EXIT,
    65: _ENTRY_41_65 + [('middle_flow/block1', (728, ) * 3, 16, 1, 'sum',
                         False)] + _EXIT,
    71: _ENTRY_71 + [('middle_flow/block1', (728, ) * 3, 16, 1, 'sum',
                      False)] + _EXIT,
}
# feature_extractor.networks_to_feature_maps: decoder end point.
LOW_LEVEL_SCOPE = {41: 'entry_flow/block2', 65: 'entry_flow/block2',
                   71: 'entry_flow/block3'}
ARCHS = (41, 65, 71)
OUTPUT_STRIDES = (8, 16, 32)


def tf_unit_schedule(arch, output_stride, multi_grid=(1, 1, 1)):
    """TF's ``stack_blocks_dense`` (xception.xception halves OS for the
    stem; OS 32 is the classifier, output_stride=None: nominal strides)."""
    target = None if output_stride == 32 else output_stride // 2
    current, rate = 1, 1
    units = {}
    for scope, depths, num_units, stride, skip, act in TF_BLOCKS[arch]:
        grid = multi_grid if scope == 'exit_flow/block2' else (1, 1, 1)
        for u in range(num_units):
            name = f'{scope}/unit_{u + 1}'
            if target is not None and current == target:
                unit_stride, unit_rate = 1, rate
                rate *= stride
            else:
                unit_stride, unit_rate = stride, 1
                current *= stride
            units[name] = dict(
                stride=unit_stride,
                rates=tuple(unit_rate * g for g in grid),
                depths=depths, skip=skip, act=act)
    return units


def ceil_div(n, d):
    return -(-n // d)


def build(**kwargs):
    return MODELS.build(dict(type='AlignedXception', **kwargs))


def named_units(model):
    """XceptionModules keyed by their TF scope ('entry_flow/block1/unit_1')."""
    return {name.replace('.', '/'): m for name, m in model.named_modules()
            if isinstance(m, XceptionModule)}


def depthwise_convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)
            and m.groups == m.in_channels and m.in_channels > 1]


@torch.no_grad()
def randomize_(module, seed):
    """TF-reference-like random values (README weights.py): conv ~
    N*sqrt(1/fan_in), BN gamma/var ~ U(0.5, 1.5), beta/mean ~ N*0.1."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) /
                           math.sqrt(fan_in))
            if m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        elif isinstance(m, _BatchNorm):
            c = m.num_features
            m.weight.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return module


# --------------------------------------------------------------------------
# Independent reference of one xception_module (plain F, TF padding rules).
# --------------------------------------------------------------------------
def relu(t):
    return torch.clamp(t, min=0)  # out of place, not F.relu (see alias test)


def tf_bn(x, bn, eps=BACKBONE_EPS):
    shape = (1, -1, 1, 1)
    return ((x - bn.running_mean.view(shape)) /
            torch.sqrt(bn.running_var.view(shape) + eps) *
            bn.weight.view(shape) + bn.bias.view(shape))


def tf_conv(x, weight, stride=1, rate=1, groups=1):
    """TF conv: 1x1 'SAME' (no padding, samples 0, 2, 4...); 3x3 stride 1
    'SAME' and stride 2 ``fixed_padding``: pad total k_eff - 1, begin
    total // 2, end the rest, then VALID."""
    k = weight.shape[-1]
    if k > 1:
        k_eff = k + (k - 1) * (rate - 1)
        total = k_eff - 1
        begin, end = total // 2, total - total // 2
        x = F.pad(x, (begin, end, begin, end))
    return F.conv2d(x, weight, stride=stride, dilation=rate, groups=groups)


def ref_unit(unit, x, stride, rates, skip, act):
    """TF ``xception_module`` from the unit's parameters, out of place."""
    out = x
    low_level = None
    for i in range(3):
        sep = getattr(unit, f'separable_conv{i + 1}')
        if not act:
            out = relu(out)
        out = tf_conv(out, sep.depthwise_conv.conv.weight,
                      stride=stride if i == 2 else 1, rate=rates[i],
                      groups=out.shape[1])
        out = tf_bn(out, sep.depthwise_conv.bn)
        if act:
            out = relu(out)
        out = tf_bn(tf_conv(out, sep.pointwise_conv.conv.weight),
                    sep.pointwise_conv.bn)
        if act:
            out = relu(out)
        if i == 1:
            low_level = out
    if skip == 'conv':
        out = out + tf_bn(tf_conv(x, unit.shortcut.conv.weight, stride),
                          unit.shortcut.bn)
    elif skip == 'sum':
        out = out + x
    return out, low_level


# --------------------------------------------------------------------------
# 1. Build, forward, backward; strides and channels from TF's tables.
# --------------------------------------------------------------------------
@pytest.mark.parametrize('output_stride', OUTPUT_STRIDES)
@pytest.mark.parametrize('arch', ARCHS)
def test_features_channels_and_sizes(arch, output_stride):
    torch.manual_seed(0)
    blocks = TF_BLOCKS[arch]
    num_features = 1 + len(blocks)
    model = build(arch=arch, output_stride=output_stride,
                  out_indices=tuple(range(num_features)))
    assert isinstance(model, AlignedXception)
    model.train()
    h, w = 33, 38  # odd and even
    x = torch.randn(1, 3, h, w, requires_grad=True)
    feats = model(x)
    assert len(feats) == num_features

    # Expected sizes: stem stride 2, then TF's schedule (every stride-2 conv
    # gives ceil(n / 2) thanks to the explicit padding).
    schedule = tf_unit_schedule(arch, output_stride)
    size = [ceil_div(h, 2), ceil_div(w, 2)]
    expected = []
    for scope, depths, num_units, _, _, _ in blocks:
        for u in range(num_units):
            s = schedule[f'{scope}/unit_{u + 1}']['stride']
            size = [ceil_div(n, s) for n in size]
        expected.append((depths[-1], tuple(size)))
    # The low-level feature: 256 channels at stride 4.
    assert feats[0].shape == (1, 256, ceil_div(h, 4), ceil_div(w, 4))
    for i, (channels, hw) in enumerate(expected):
        assert feats[i + 1].shape == (1, channels, *hw), blocks[i][0]
    # The final feature is at the output stride, 3 halvings for OS 8 etc.
    final = (ceil_div(h, output_stride), ceil_div(w, output_stride))
    assert feats[-1].shape == (1, 2048, *final)
    if output_stride == 8:
        assert final == tuple(
            ceil_div(ceil_div(ceil_div(n, 2), 2), 2) for n in (h, w))

    # Middle flow: 8 units for xception_41, 16 otherwise.
    units = named_units(model)
    middle = [n for n in units if n.startswith('middle_flow/')]
    assert len(middle) == (8 if arch == 41 else 16)
    assert set(units) == set(schedule)

    # Backward reaches every parameter and the input.
    loss = sum(f.float().square().mean() for f in feats)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_default_out_indices_and_batch_even_odd_sizes():
    """Default features are (low-level, final) for the v3+ head."""
    torch.manual_seed(0)
    model = build(arch=41, output_stride=16).eval()
    with torch.no_grad():
        low, final = model(torch.randn(2, 3, 65, 50))
    assert low.shape == (2, 256, 17, 13)
    assert final.shape == (2, 2048, 5, 4)
    # Negative indices count from the end.
    model = build(arch=71, output_stride=16, out_indices=(-1, 0, 2)).eval()
    with torch.no_grad():
        a, b, c = model(torch.randn(1, 3, 33, 33))
    assert a.shape == (1, 2048, 3, 3)
    assert b.shape == (1, 256, 9, 9)
    assert c.shape == (1, 256, 9, 9)  # xception_71 entry b2: 256, stride 1


def test_low_level_is_pre_relu_sepconv2_of_the_right_unit():
    """Feature 0 is the BN output of unit_1's separable_conv2 pointwise
    (pre-ReLU, so it has negative values) of entry block 2 (3 for 71)."""
    torch.manual_seed(0)
    for arch in (65, 71):
        model = randomize_(build(arch=arch, output_stride=16), arch).eval()
        unit = named_units(model)[LOW_LEVEL_SCOPE[arch] + '/unit_1']
        seen = {}
        hook = unit.separable_conv2.register_forward_hook(
            lambda m, i, o: seen.setdefault('out', o.clone()))
        with torch.no_grad():
            low = model(torch.randn(1, 3, 33, 33))[0]
        hook.remove()
        assert torch.equal(low, seen['out'])
        assert (low < 0).any()


# --------------------------------------------------------------------------
# 2. Atrous rates, strides and paddings of the actual convs.
# --------------------------------------------------------------------------
def check_convs(model, arch, output_stride, multi_grid=(1, 1, 1)):
    schedule = tf_unit_schedule(arch, output_stride, multi_grid)
    units = named_units(model)
    assert set(units) == set(schedule)
    for name, unit in units.items():
        spec = schedule[name]
        dws = depthwise_convs(unit)
        assert len(dws) == 3, name
        for i, conv in enumerate(dws):
            stride = spec['stride'] if i == 2 else 1
            rate = spec['rates'][i]
            assert conv.kernel_size == (3, 3), name
            assert conv.stride == (stride, stride), (name, i)
            assert conv.dilation == (rate, rate), (name, i)
            assert conv.padding == (rate, rate), (name, i)
            assert conv.padding_mode == 'zeros'
        convs1x1 = [(n, m) for n, m in unit.named_modules()
                    if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
        assert all(m.stride == (1, 1) and m.padding == (0, 0) and
                   m.dilation == (1, 1)
                   for n, m in convs1x1 if n.startswith('separable_conv'))
        shortcut = [m for n, m in convs1x1
                    if not n.startswith('separable_conv')]
        if spec['skip'] == 'conv':
            assert len(shortcut) == 1, name
            assert shortcut[0].stride == (spec['stride'], ) * 2, name
            assert shortcut[0].padding == (0, 0), name
            assert shortcut[0].out_channels == spec['depths'][-1]
        else:
            assert shortcut == [], name
        # No other convs (e.g. a hidden asymmetric padding conv) in a unit.
        assert len([m for m in unit.modules()
                    if isinstance(m, nn.Conv2d)]) == 6 + len(shortcut)
    # Nothing in the network pads asymmetrically.
    assert not any(isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d))
                   for m in model.modules())
    # Stem: conv1_1 3x3/2 pad 1 (conv2d_same), conv1_2 3x3/1 pad 1.
    stem = [m for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and n.startswith('entry_flow.conv1')]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride,
             m.padding, m.dilation) for m in stem] == [
                 (3, 32, (3, 3), (2, 2), (1, 1), (1, 1)),
                 (32, 64, (3, 3), (1, 1), (1, 1), (1, 1))]
    return schedule, units


@pytest.mark.parametrize('output_stride', OUTPUT_STRIDES)
@pytest.mark.parametrize('arch', ARCHS)
def test_strides_rates_and_padding(arch, output_stride):
    torch.manual_seed(0)
    check_convs(build(arch=arch, output_stride=output_stride), arch,
                output_stride)


def _block_summary(units, block):
    """(strides, dilations) of the 3 depthwise convs of every unit."""
    res = set()
    for name, unit in units.items():
        if name.startswith(block + '/'):
            dws = depthwise_convs(unit)
            res.add((tuple(c.stride[0] for c in dws),
                     tuple(c.dilation[0] for c in dws)))
    assert res, block
    return res


def test_rates_literal_xception65_os16_os8_os32():
    """The cases spelled out in the README, literally."""
    torch.manual_seed(0)
    u = named_units(build(arch=65, output_stride=16))
    for b in ('entry_flow/block1', 'entry_flow/block2', 'entry_flow/block3'):
        assert _block_summary(u, b) == {((1, 1, 2), (1, 1, 1))}
    assert _block_summary(u, 'middle_flow/block1') == {((1, 1, 1), (1, 1, 1))}
    assert _block_summary(u, 'exit_flow/block1') == {((1, 1, 1), (1, 1, 1))}
    assert _block_summary(u, 'exit_flow/block2') == {((1, 1, 1), (2, 2, 2))}

    u = named_units(build(arch=65, output_stride=16, multi_grid=(1, 2, 4)))
    assert _block_summary(u, 'exit_flow/block2') == {((1, 1, 1), (2, 4, 8))}
    assert _block_summary(u, 'exit_flow/block1') == {((1, 1, 1), (1, 1, 1))}

    u = named_units(build(arch=65, output_stride=8))
    assert _block_summary(u, 'entry_flow/block2') == {((1, 1, 2), (1, 1, 1))}
    assert _block_summary(u, 'entry_flow/block3') == {((1, 1, 1), (1, 1, 1))}
    assert _block_summary(u, 'middle_flow/block1') == {((1, 1, 1), (2, 2, 2))}
    assert _block_summary(u, 'exit_flow/block1') == {((1, 1, 1), (2, 2, 2))}
    assert _block_summary(u, 'exit_flow/block2') == {((1, 1, 1), (4, 4, 4))}

    u = named_units(build(arch=65, output_stride=8, multi_grid=(1, 2, 4)))
    assert _block_summary(u, 'exit_flow/block2') == {((1, 1, 1), (4, 8, 16))}

    u = named_units(build(arch=65, output_stride=32))
    for b in ('entry_flow/block1', 'entry_flow/block2', 'entry_flow/block3',
              'exit_flow/block1'):
        assert _block_summary(u, b) == {((1, 1, 2), (1, 1, 1))}, b
    assert _block_summary(u, 'middle_flow/block1') == {((1, 1, 1), (1, 1, 1))}
    assert _block_summary(u, 'exit_flow/block2') == {((1, 1, 1), (1, 1, 1))}


def test_rates_literal_xception71_os16():
    torch.manual_seed(0)
    u = named_units(build(arch=71, output_stride=16))
    for b in ('entry_flow/block1', 'entry_flow/block3', 'entry_flow/block5'):
        assert _block_summary(u, b) == {((1, 1, 2), (1, 1, 1))}, b
    for b in ('entry_flow/block2', 'entry_flow/block4', 'middle_flow/block1',
              'exit_flow/block1'):
        assert _block_summary(u, b) == {((1, 1, 1), (1, 1, 1))}, b
    assert _block_summary(u, 'exit_flow/block2') == {((1, 1, 1), (2, 2, 2))}
    middle = [n for n in u if n.startswith('middle_flow/block1/')]
    assert sorted(middle, key=lambda n: int(n.rsplit('_', 1)[1])) == [
        f'middle_flow/block1/unit_{i}' for i in range(1, 17)]


def test_arch_settings_match_tf_tables():
    """ARCH_SETTINGS (the architecture as data) holds TF's tables."""
    for arch in ARCHS:
        got = [(b.scope, tuple(b.depths), b.num_units, b.stride, b.skip,
                b.act_in_sepconv) for b in ARCH_SETTINGS[arch]]
        assert got == [tuple(t) for t in TF_BLOCKS[arch]], arch


# --------------------------------------------------------------------------
# 3. Numerics of one unit against the plain-F reference.
# --------------------------------------------------------------------------
UNIT_CASES = [
    # in, depths, stride, rate, unit_rates, skip, act, input size
    (8, (12, 12, 16), 2, 1, (1, 1, 1), 'conv', False, (11, 10)),
    (8, (12, 12, 16), 1, 2, (1, 1, 1), 'conv', False, (9, 12)),
    (16, (16, 16, 16), 1, 1, (1, 1, 1), 'sum', False, (7, 8)),
    (16, (16, 16, 16), 1, 3, (1, 1, 1), 'sum', False, (7, 8)),
    (8, (12, 12, 20), 1, 2, (1, 2, 4), 'none', True, (9, 7)),
    (8, (12, 16, 20), 1, 4, (1, 2, 4), 'none', True, (5, 6)),  # rate > size
]


@pytest.mark.parametrize(
    'cin,depths,stride,rate,unit_rates,skip,act,hw', UNIT_CASES)
def test_unit_matches_reference(cin, depths, stride, rate, unit_rates, skip,
                                act, hw):
    torch.manual_seed(0)
    unit = XceptionModule(cin, depths, stride, rate, unit_rates, skip, act,
                          dict(type='BN', eps=BACKBONE_EPS,
                               momentum=BACKBONE_MOMENTUM))
    randomize_(unit, 1).eval()
    x = torch.randn(2, cin, *hw)
    x_before = x.clone()
    with torch.no_grad():
        out, low = unit(x)
        rates = tuple(rate * r for r in unit_rates)
        ref_out, ref_low = ref_unit(unit, x_before, stride, rates, skip, act)
    assert torch.equal(x, x_before)
    assert out.shape == (2, depths[-1], *(ceil_div(n, stride) for n in hw))
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(low, ref_low, atol=1e-5, rtol=1e-5)
    if not act:
        assert (low < 0).any()  # the pre-ReLU BN output
    # The skip matters: dropping it (or ReLU-ing its input) changes output.
    if skip != 'none':
        wrong, _ = ref_unit(unit, x_before, stride, rates, 'none', act)
        assert (out - wrong).abs().max() > 1e-2


# --------------------------------------------------------------------------
# 4. Residual alias (STYLE.md): the shortcut must see the pre-ReLU input.
# --------------------------------------------------------------------------
def check_every_unit(model, arch, output_stride, x):
    """Run ``model`` and compare every unit with the out-of-place reference
    on the input it received; also check no unit modified its input."""
    schedule = tf_unit_schedule(arch, output_stride)
    records = {}
    hooks = []
    for name, unit in named_units(model).items():
        def pre(m, args, name=name):
            records[name] = dict(inp=args[0], before=args[0].clone())

        def post(m, args, out, name=name):
            records[name]['out'] = out[0].clone()

        hooks += [unit.register_forward_pre_hook(pre),
                  unit.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    assert set(records) == set(schedule)
    units = named_units(model)
    for name, rec in records.items():
        spec = schedule[name]
        assert torch.equal(rec['inp'], rec['before']), \
            f'{name} modified its input in place'
        with torch.no_grad():
            ref, _ = ref_unit(units[name], rec['before'], spec['stride'],
                              spec['rates'], spec['skip'], spec['act'])
        torch.testing.assert_close(rec['out'], ref, atol=1e-5, rtol=1e-5,
                                   msg=lambda m, name=name: f'{name}: {m}')


@pytest.fixture(scope='module')
def xception41_eval():
    torch.manual_seed(0)
    model = randomize_(build(arch=41, output_stride=16), 41).eval()
    return model, torch.randn(1, 3, 33, 33)


def test_every_unit_matches_out_of_place_reference(xception41_eval):
    torch.manual_seed(0)
    model, x = xception41_eval
    check_every_unit(model, 41, 16, x)


def test_alias_check_catches_inplace_relu_in_functional(xception41_eval,
                                                        monkeypatch):
    """Demonstration: an in-place F.relu (nn.ReLU calls F.relu too) on the
    unit input is caught by ``check_every_unit``."""
    torch.manual_seed(0)
    model, x = xception41_eval

    def relu_inplace(input, inplace=False):
        return torch.relu_(input)

    monkeypatch.setattr(torch.nn.functional, 'relu', relu_inplace)
    with pytest.raises(AssertionError):
        check_every_unit(model, 41, 16, x)


def test_alias_check_catches_inplace_relu_module(xception41_eval,
                                                 monkeypatch):
    """Demonstration, independent of how the unit is written: an
    nn.ReLU(inplace=True) applied to each unit's input before its body
    (main path unchanged since relu(relu(x)) == relu(x), but the shortcut
    then sees relu(x)) is caught."""
    torch.manual_seed(0)
    model, x = xception41_eval
    act = nn.ReLU(inplace=True)
    for unit in named_units(model).values():
        original = unit.forward
        monkeypatch.setattr(unit, 'forward',
                            lambda t, original=original: original(act(t)))
    with pytest.raises(AssertionError):
        check_every_unit(model, 41, 16, x)


# --------------------------------------------------------------------------
# 5. Gradient checkpointing.
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def with_cp_runs():
    """One training step of the same xception_41 with and without
    ``with_cp``; counts forward calls of every unit body."""
    torch.manual_seed(0)
    plain = build(arch=41, output_stride=16, out_indices=(0, 3, -1))
    ckpt = build(arch=41, output_stride=16, out_indices=(0, 3, -1),
                 with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 33, 33)
    results = {}
    for key, model in (('plain', plain), ('cp', ckpt)):
        model.train()
        calls = []
        hooks = [u.separable_conv1.register_forward_hook(
            lambda *a: calls.append(1))
            for u in named_units(model).values()]
        xi = x.clone().requires_grad_()
        outs = model(xi)
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum()
                   for o in outs)
        loss.backward()
        for h in hooks:
            h.remove()
        results[key] = dict(
            outs=[o.detach() for o in outs], input_grad=xi.grad,
            grads={n: p.grad for n, p in model.named_parameters()},
            buffers={n: b.clone() for n, b in model.named_buffers()},
            calls=len(calls), num_units=len(named_units(model)))
    return results


def test_with_cp_same_outputs_and_gradients(with_cp_runs):
    torch.manual_seed(0)
    plain, cp = with_cp_runs['plain'], with_cp_runs['cp']
    # Checkpointing is really on: every unit body runs again in backward.
    assert plain['calls'] == plain['num_units']
    assert cp['calls'] == 2 * cp['num_units']
    for a, b in zip(plain['outs'], cp['outs']):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cp['input_grad'], plain['input_grad'],
                               atol=1e-5, rtol=1e-4)
    assert plain['grads'].keys() == cp['grads'].keys()
    for name, g in plain['grads'].items():
        assert cp['grads'][name] is not None, name
        torch.testing.assert_close(cp['grads'][name], g, atol=1e-5,
                                   rtol=1e-4, msg=name)


def test_with_cp_same_bn_running_stats(with_cp_runs):
    """One training step must update every BN's running statistics exactly
    once, with or without checkpointing (the recomputation in backward must
    not update them again)."""
    torch.manual_seed(0)
    plain, cp = with_cp_runs['plain'], with_cp_runs['cp']
    wrong = []
    for name, b in plain['buffers'].items():
        if not torch.allclose(cp['buffers'][name].double(), b.double(),
                              atol=1e-7, rtol=1e-6):
            wrong.append(name)
    key = 'entry_flow.block1.unit_1.separable_conv1.depthwise_conv.bn.' \
          'num_batches_tracked'
    assert not wrong, (
        f'{len(wrong)} of {len(plain["buffers"])} BN buffers differ with '
        f'with_cp=True, e.g. {wrong[:3]}; {key}: '
        f'{int(plain["buffers"][key])} without, {int(cp["buffers"][key])} '
        'with checkpointing')


# --------------------------------------------------------------------------
# 6. frozen_stages, norm_eval, norm_cfg, bad arguments, Pretrained.
# --------------------------------------------------------------------------
BLOCKS_41 = ['entry_flow.block1', 'entry_flow.block2', 'entry_flow.block3',
             'middle_flow.block1', 'exit_flow.block1', 'exit_flow.block2']
STEM = ['entry_flow.conv1_1', 'entry_flow.conv1_2']


def is_under(name, prefixes):
    return any(name == p or name.startswith(p + '.') for p in prefixes)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 6])
def test_frozen_stages(frozen_stages):
    torch.manual_seed(0)
    model = build(arch=41, output_stride=16, frozen_stages=frozen_stages)
    frozen = [] if frozen_stages < 0 else STEM + BLOCKS_41[:frozen_stages]
    model.train()
    model.eval().train()  # twice: train() must keep re-freezing
    for name, p in model.named_parameters():
        assert p.requires_grad == (not is_under(name, frozen)), name
    bns = {n: m for n, m in model.named_modules()
           if isinstance(m, _BatchNorm)}
    # stem 2; 6 per unit (3 entry + 8 middle + 2 exit); 4 conv shortcuts
    assert len(bns) == 2 + 6 * 13 + 4
    for name, m in bns.items():
        assert m.training == (not is_under(name, frozen)), name
    if frozen_stages == 2:
        # A training step leaves frozen statistics alone.
        before = {n: m.running_mean.clone() for n, m in bns.items()}
        model(torch.randn(2, 3, 33, 33))
        for name, m in bns.items():
            same = torch.equal(before[name], m.running_mean)
            assert same == is_under(name, frozen), name


def test_norm_eval_and_default_norm_cfg():
    torch.manual_seed(0)
    model = build(arch=41, output_stride=16)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns
    for m in bns:
        assert type(m) is nn.BatchNorm2d
        assert m.eps == pytest.approx(1e-3, rel=0, abs=1e-12)
        assert m.momentum == pytest.approx(3e-4, rel=0, abs=1e-12)
        assert m.affine and m.track_running_stats
    # Convs followed by BN have no bias.
    assert all(m.bias is None for m in model.modules()
               if isinstance(m, nn.Conv2d))

    model = build(arch=41, output_stride=16, norm_eval=True).train()
    assert model.training
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))
    assert all(p.requires_grad for p in model.parameters())
    before = [m.running_var.clone() for m in model.modules()
              if isinstance(m, _BatchNorm)]
    model(torch.randn(2, 3, 33, 33))
    after = [m.running_var for m in model.modules()
             if isinstance(m, _BatchNorm)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize('kwargs', [
    dict(arch=50),
    dict(arch='65'),
    dict(output_stride=4),
    dict(output_stride=12),
    dict(output_stride=64),
    dict(multi_grid=(1, 2)),
    dict(multi_grid=(1, 2, 4, 8)),
    dict(multi_grid=(1, 0, 2)),
    dict(arch=41, out_indices=(7, )),
    dict(arch=41, out_indices=(0, -8)),
    dict(arch=71, out_indices=(9, )),
    dict(arch=41, frozen_stages=7),
    dict(arch=71, frozen_stages=9),
    dict(frozen_stages=-2),
])
def test_bad_arguments(kwargs):
    torch.manual_seed(0)
    with pytest.raises(ValueError):
        build(**kwargs)


def test_edge_arguments_accepted():
    torch.manual_seed(0)
    build(arch=41, out_indices=(6, -7), frozen_stages=6)
    build(arch=71, out_indices=(8, -9), frozen_stages=8)


def test_pretrained_init_cfg(tmp_path):
    torch.manual_seed(0)
    source = randomize_(build(arch=41, output_stride=16), 7)
    state_dict = source.state_dict()
    path = tmp_path / 'xception41_converted.pth'
    torch.save({'state_dict': state_dict,
                'meta': {'source': 'unit test', 'arch': 41}}, str(path))
    model = build(arch=41, output_stride=8,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    fresh = model.state_dict()
    differs = [k for k in state_dict if k.endswith('weight')
               and not torch.equal(fresh[k], state_dict[k])]
    assert differs  # not vacuous
    model.init_weights()
    loaded = model.state_dict()
    assert loaded.keys() == state_dict.keys()
    for k, v in state_dict.items():
        assert torch.equal(loaded[k], v), k


# --------------------------------------------------------------------------
# 6. act_cfg: TF's ReLU by default, any mmcv activation on request.
# --------------------------------------------------------------------------
@pytest.mark.parametrize('act,fn', [('ReLU6', F.relu6), ('GELU', F.gelu)])
def test_act_cfg_is_used_everywhere(act, fn):
    """A non-default act_cfg replaces every ReLU (stem, before and inside
    the separable convs), keeps the parameter names, runs each activation
    once per forward and changes the output."""
    torch.manual_seed(0)
    relu = randomize_(build(arch=41, output_stride=16), 0).eval()
    other = build(arch=41, output_stride=16, act_cfg=dict(type=act)).eval()
    assert other.state_dict().keys() == relu.state_dict().keys()
    other.load_state_dict(relu.state_dict())
    acts = [m for m in other.modules() if type(m).__name__ == act]
    assert not any(isinstance(m, nn.ReLU) for m in other.modules())
    # 2 stem convs; per unit 3 pre-activations, or dw + pw acts x 3 inside.
    units = tf_unit_schedule(41, 16)
    assert len(acts) == 2 + sum(6 if u['act'] else 3 for u in units.values())
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m))
             for m in acts]
    x = 4 * torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        out, ref = other(x)[-1], relu(x)[-1]
    assert not torch.allclose(out, ref, rtol=1e-2, atol=1e-2)
    for h in hooks:
        h.remove()
    assert sorted(map(id, calls)) == sorted(map(id, acts))
    # Out of place before the separable convs: the skip sees the input.
    unit = XceptionModule(16, (16, 16, 16), 1, 1, (1, 1, 1), 'sum', False,
                          dict(type='BN', eps=BACKBONE_EPS),
                          act_cfg=dict(type=act)).eval()
    x = 8 * torch.randn(2, 16, 7, 8)
    x_before = x.clone()
    with torch.no_grad():
        y, _ = unit(x)
        h = x_before
        for i in range(3):
            h = getattr(unit, f'separable_conv{i + 1}')(fn(h))
    torch.testing.assert_close(y, h + x_before, rtol=0, atol=0)
    assert torch.equal(x, x_before)
