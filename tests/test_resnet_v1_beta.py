"""ResNetV1BetaTF against TF DeepLab's ``core/resnet_v1_beta.py``: TF's
variable names and shapes for depth 50 and 101 (tests/tf_names.py, written
from the official code independently of deeplabplus_mm.archs), strides and
rates at output stride 8 / 16 / 32 (literal tables), pool1's TF 'SAME'
padding, the bottleneck unit against a plain ``torch.nn.functional``
reference, and the converter's variant detection. The whole network's
numbers against TensorFlow: tests/tf_eval/resnet*beta_* (test_tf_eval_refs.py).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

import tf_names
from deeplabplus_mm.converters import (CheckpointInfo, ConversionError,
                                       inspect_variables, plan,
                                       suggest_config)
from deeplabplus_mm.models.backbones import ResNetV1BetaTF

# stack_blocks_dense with the root's stride 4 counted first, multi-grid
# (1, 2, 4): (unit, conv2 stride, conv2 rate) of every unit that is not
# stride 1 / rate 1.
STRIDES_RATES = {
    32: {'block1/unit_3': (2, 1), 'block2/unit_4': (2, 1),
         'block3/unit_6': (2, 1), 'block4/unit_2': (1, 2),
         'block4/unit_3': (1, 4)},
    16: {'block1/unit_3': (2, 1), 'block2/unit_4': (2, 1),
         'block4/unit_1': (1, 2), 'block4/unit_2': (1, 4),
         'block4/unit_3': (1, 8)},
    8: {'block1/unit_3': (2, 1),
        **{f'block3/unit_{u}': (1, 2) for u in range(1, 7)},
        'block4/unit_1': (1, 4), 'block4/unit_2': (1, 8),
        'block4/unit_3': (1, 16)},
}
UNITS_50 = [f'block{b}/unit_{u}' for b, n in enumerate((3, 4, 6, 3), 1)
            for u in range(1, n + 1)]


def build(**kwargs):
    torch.manual_seed(0)
    model = ResNetV1BetaTF(**kwargs)
    model.init_weights()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def unit(model, scope):
    block, name = scope.split('/')
    return getattr(getattr(model, block), name)


@pytest.mark.parametrize('depth', [50, 101])
def test_tf_variable_names_and_shapes(depth):
    """Every parameter is one of TF's variables and every TF variable
    (classifier logits aside, which the converter leaves out) has its
    parameter."""
    with torch.device('meta'):
        model = ResNetV1BetaTF(depth=depth)
    names = dict(tf_names.resnet_v1_beta(depth))
    info = CheckpointInfo('resnet_v1_beta', f'resnet_v1_{depth}_beta',
                          dict(depth=depth), None, None, False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    extra = dict(tf_names.imagenet_classifier(f'resnet_v1_{depth}'))
    entries, ignored = plan({**names, **extra}, shapes, info)
    assert {e.tf_name for e in entries} - {None} == set(names)
    assert ignored == sorted(extra)


@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_strides_rates_and_feature_sizes(output_stride):
    with torch.device('meta'):
        model = ResNetV1BetaTF(output_stride=output_stride,
                               out_indices=(0, 1, 2, 3, 4))
    for scope in UNITS_50:
        conv2 = unit(model, scope).conv2.conv
        want = STRIDES_RATES[output_stride].get(scope, (1, 1))
        assert (conv2.stride[0], conv2.dilation[0]) == want, scope
        assert conv2.padding[0] == conv2.dilation[0]
        for name in ('conv1', 'conv3'):  # 1x1 convs: never strided
            conv = getattr(unit(model, scope), name).conv
            assert conv.stride == (1, 1) and conv.dilation == (1, 1)
    # shortcut convs only where the depth changes (unit_1), at stride 1
    convs = [s for s in UNITS_50 if unit(model, s).shortcut is not None]
    assert convs == [f'block{b}/unit_1' for b in range(1, 5)]
    assert all(unit(model, s).shortcut.conv.stride == (1, 1) for s in convs)
    # 120 -> 60 (conv1_1) -> 30 (pool1) -> 15 -> 8 -> 4: ceil at each
    # stride 2; the low-level feature is block1/unit_2's conv3 (stride 4)
    model = build(output_stride=output_stride, out_indices=(0, 1, 2, 3, 4))
    with torch.no_grad():
        low, b1, b2, b3, b4 = model(torch.randn(1, 3, 120, 161))
    size = {8: (15, 21), 16: (8, 11), 32: (4, 6)}[output_stride]
    assert tuple(b4.shape) == (1, 2048) + size
    assert tuple(low.shape) == (1, 256, 30, 41)
    assert tuple(b1.shape) == (1, 256, 15, 21)
    assert model.feature_channels == [256, 256, 512, 1024, 2048]


@pytest.mark.parametrize('hw', [(120, 160), (121, 161)])
def test_pool1_pads_as_tf_same(hw):
    """slim.max_pool2d 3x3/2 'SAME' (resnet_arg_scope): pad total
    max((ceil(n/2) - 1) * 2 + 3 - n, 0), top/left total // 2; padded cells
    never win, also on negative inputs."""
    model = build(out_indices=(1, ))
    x = torch.randn(1, 3, *hw)
    captured = {}
    model.conv1_3.register_forward_hook(
        lambda m, a, out: captured.setdefault('root', out))
    hook = model.block1.unit_1.register_forward_pre_hook(
        lambda m, args: captured.setdefault('pool', args[0]))
    with torch.no_grad():
        model(x)
    hook.remove()
    root = captured['root'] - 5  # negative values too
    pads = []
    for n in (root.shape[3], root.shape[2]):
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    if hw[0] % 4 == 0:  # 60 x 80: 0 before, 1 after
        assert pads == [0, 1, 0, 1]
    ref = F.max_pool2d(F.pad(root, pads, value=-1e9), 3, 2)
    from deeplabplus_mm.models.utils.tf_padding import tf_same_pad
    torch.testing.assert_close(
        F.max_pool2d(tf_same_pad(root, 3, 2, value=float('-inf')), 3, 2),
        ref)
    assert captured['pool'].shape[2:] == ref.shape[2:]


def _reference_unit(module, x):
    """resnet_v1_beta.bottleneck with functional ops (BN eps 1e-5)."""
    def conv_bn(m, x, act):
        y = F.conv2d(x, m.conv.weight, None, m.conv.stride, m.conv.padding,
                     m.conv.dilation)
        y = F.batch_norm(y, m.bn.running_mean, m.bn.running_var,
                         m.bn.weight, m.bn.bias, False, 0.0, 1e-5)
        return F.relu(y) if act else y

    if module.shortcut is not None:
        shortcut = conv_bn(module.shortcut, x, False)
    else:
        shortcut = F.max_pool2d(x, 1, module.stride)
    h = conv_bn(module.conv1, x, True)
    h = conv_bn(module.conv2, h, True)
    h = conv_bn(module.conv3, h, False)
    return F.relu(shortcut + h), h


@pytest.mark.parametrize('scope', ['block1/unit_1', 'block1/unit_3',
                                   'block2/unit_2', 'block4/unit_3'])
@pytest.mark.parametrize('hw', [(15, 20), (17, 17)])
def test_unit_matches_reference(scope, hw):
    model = build(output_stride=16)
    module = unit(model, scope)
    x = torch.randn(1, module.conv1.conv.in_channels, *hw)
    x_before = x.clone()
    with torch.no_grad():
        out, conv3 = module(x)
        ref, ref_conv3 = _reference_unit(module, x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv3, ref_conv3, atol=1e-5, rtol=1e-5)
    assert torch.equal(x, x_before)  # the shortcut saw the input unchanged


@pytest.mark.parametrize('depth', [50, 101])
def test_variant_detection_and_config_suggestion(depth):
    names = tf_names.resnet_v1_beta(depth) + tf_names.imagenet_classifier(
        f'resnet_v1_{depth}')
    info = inspect_variables(dict(names))
    assert (info.family, info.variant, info.backbone, info.head) == (
        'resnet_v1_beta', f'resnet_v1_{depth}_beta', dict(depth=depth), None)
    assert suggest_config(info).endswith(
        f'deeplabv3plus/deeplabv3plus_resnet{depth}-beta-d16_4xb4-30k_'
        'voc12aug-513x513.py')


def test_non_beta_and_inconsistent_checkpoints_are_refused():
    """slim's resnet_v1 (7x7 conv1) is not the beta variant; a 50 scope
    with 101's units in block 3 fits no variant."""
    names = dict(tf_names.resnet_v1_beta(50))
    slim = {n.replace('conv1_1', 'conv1'): s for n, s in names.items()
            if '/conv1_2/' not in n and '/conv1_3/' not in n}
    with pytest.raises(ConversionError, match='not the beta root'):
        inspect_variables(slim)
    mixed = {n.replace('resnet_v1_101/', 'resnet_v1_50/'): s
             for n, s in tf_names.resnet_v1_beta(101)}
    with pytest.raises(ConversionError, match='fit none of the known'):
        inspect_variables(mixed)


def test_arguments_are_checked():
    for kwargs in (dict(depth=34), dict(output_stride=4),
                   dict(multi_grid=(1, 2)), dict(low_level_stride=2),
                   dict(out_indices=(5, )), dict(frozen_stages=5)):
        with pytest.raises(ValueError):
            ResNetV1BetaTF(**kwargs)


def test_frozen_stages_and_norm_eval():
    model = ResNetV1BetaTF(frozen_stages=1, norm_eval=True)
    model.train()
    frozen = [model.conv1_1, model.conv1_2, model.conv1_3, model.block1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.block2.parameters())
    assert not any(m.training for m in model.modules()
                   if isinstance(m, _BatchNorm))
    assert np.isclose(model.conv1_1.bn.eps, 1e-5)
    assert np.isclose(model.conv1_1.bn.momentum, 0.05)


@pytest.mark.parametrize('depth', [50, 101])
def test_generated_names_are_tensorflows(depth):
    """tf_names.resnet_v1_beta (which the tests above and the ImageNet
    test write checkpoints from) lists the variables TF DeepLab created for
    the stored reference, its convolutions in TF's order."""
    import os.path as osp

    from conftest import REPO
    path = osp.join(REPO, 'tests', 'tf_eval', f'resnet{depth}beta_voc_os16',
                    'variables.tsv')
    with open(path) as f:
        tf_table = [(name, tuple(int(s) for s in shape.split(',')))
                    for name, shape in (line.rstrip('\n').split('\t')
                                        for line in f)]
    backbone = [(n, s) for n, s in tf_table
                if n.startswith(f'resnet_v1_{depth}/')]
    ours = tf_names.resnet_v1_beta(depth)
    assert sorted(backbone) == sorted(ours)
    # the convolutions in TF's creation order (BN leaves aside)
    assert [n for n, _ in backbone if n.endswith('/weights')] == [
        n for n, _ in ours if n.endswith('/weights')]
    head = tf_names.aspp(2048) + tf_names.decoder(256) + tf_names.logits(21)
    assert sorted(tf_table) == sorted(backbone + head)


def test_onnx_export_keeps_tf_same_pool_padding(tmp_path):
    """pool1's padding depends on the input size; an ONNX export traced at
    a size whose halves are odd (66 -> 33) runs in ONNX Runtime with the
    same feature sizes and values as torch."""
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    model = build(out_indices=(0, 1)).eval()
    x = torch.randn(1, 3, 66, 82)
    path = str(tmp_path / 'resnet.onnx')
    torch.onnx.export(model, x, path, opset_version=17, input_names=['x'],
                      dynamo=False)
    outs = ort.InferenceSession(path).run(None, {'x': x.numpy()})
    with torch.no_grad():
        refs = model(x)
    for out, ref in zip(outs, refs):
        assert out.shape == tuple(ref.shape)
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-4)
