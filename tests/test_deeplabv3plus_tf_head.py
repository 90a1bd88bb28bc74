"""DeepLabV3PlusTFHead and the xception65 segmentor config against
TensorFlow DeepLab's rules (shared/tf_deeplab README items 1, 2, 8-12).

The reference head below is plain ``torch.nn.functional`` written from
``model.extract_features`` / ``refine_by_decoder`` / ``get_branch_logits``:
image pooling first, then aspp0 and the atrous branches; concat_projection;
feature_projection0; align_corners resize; concat [ASPP, low-level]; two 3x3
convs; logits with bias.
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch.nn.modules.batchnorm import _BatchNorm

import deeplabplus_mm  # noqa: F401  (registers the head)
from conftest import REPO, build_model

HEAD_EPS = 1e-5
CHANNELS = 32
NUM_CLASSES = 21
CONFIG = osp.join(REPO, 'configs/_base_/models/deeplabv3plus_xception65.py')


def build_head(**kwargs):
    cfg = dict(
        type='DeepLabV3PlusTFHead',
        in_channels=2048,
        in_index=1,
        channels=CHANNELS,
        dilations=(1, 6, 12, 18),
        c1_in_channels=256,
        c1_channels=48,
        c1_in_index=0,
        num_classes=NUM_CLASSES,
        align_corners=True,
        dropout_ratio=0.1,
        norm_cfg=dict(type='BN', eps=HEAD_EPS, momentum=3e-4))
    cfg.update(kwargs)
    return MODELS.build(cfg)


@torch.no_grad()
def randomize_(module, seed):
    """TF-reference-like random values (README weights.py)."""
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


def make_inputs(n=2, low_hw=(13, 15), high_hw=(7, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 256, *low_hw, generator=g),
            torch.randn(n, 2048, *high_hw, generator=g)]


# --------------------------------------------------------------------------
# Reference (plain F, TF rules).
# --------------------------------------------------------------------------
def relu(t):
    return torch.clamp(t, min=0)


def tf_bn(x, bn, eps=HEAD_EPS):
    shape = (1, -1, 1, 1)
    return ((x - bn.running_mean.view(shape)) /
            torch.sqrt(bn.running_var.view(shape) + eps) *
            bn.weight.view(shape) + bn.bias.view(shape))


def same_conv(x, weight, rate=1, groups=1):
    """TF 'SAME' stride-1 conv: total pad k_eff - 1, begin total // 2."""
    k = weight.shape[-1]
    total = k + (k - 1) * (rate - 1) - 1
    x = F.pad(x, (total // 2, total - total // 2) * 2)
    return F.conv2d(x, weight, dilation=rate, groups=groups)


def conv_bn_relu(x, cm, rate=1):
    """1x1 or dense 3x3 conv (no bias) + BN + ReLU from a ConvModule."""
    assert cm.conv.bias is None
    return relu(tf_bn(same_conv(x, cm.conv.weight, rate), cm.bn))


def sep_conv(x, dsc, rate):
    """utils.split_separable_conv2d: dw-BN-ReLU-pw-BN-ReLU."""
    out = relu(tf_bn(same_conv(x, dsc.depthwise_conv.conv.weight, rate,
                               groups=x.shape[1]), dsc.depthwise_conv.bn))
    return relu(tf_bn(same_conv(out, dsc.pointwise_conv.conv.weight),
                      dsc.pointwise_conv.bn))


def ref_head(head, inputs, rates=(6, 12, 18), sep_aspp=True, sep_dec=True,
             image_level=True, decoder=True, pool_last=False,
             align_corners=True):
    x = inputs[1]
    size = x.shape[2:]
    branches = []
    if image_level:
        pooled = conv_bn_relu(x.mean(dim=(2, 3), keepdim=True),
                              head.image_pooling)
        pooled = F.interpolate(pooled, size=size, mode='bilinear',
                               align_corners=True)
    branches.append(conv_bn_relu(x, head.aspp[0]))
    for j, rate in enumerate(rates):
        branch = head.aspp[j + 1]
        branches.append(sep_conv(x, branch, rate) if sep_aspp else
                        conv_bn_relu(x, branch, rate))
    if image_level:
        branches = branches + [pooled] if pool_last else [pooled] + branches
    out = conv_bn_relu(torch.cat(branches, 1), head.concat_projection)
    if decoder:
        low = conv_bn_relu(inputs[0], head.feature_projection0)
        out = F.interpolate(out, size=low.shape[2:], mode='bilinear',
                            align_corners=align_corners)
        out = torch.cat([out, low], 1)
        for conv in (head.decoder_conv0, head.decoder_conv1):
            out = sep_conv(out, conv, 1) if sep_dec else conv_bn_relu(out,
                                                                      conv)
    return F.conv2d(out, head.conv_seg.weight, head.conv_seg.bias)


# --------------------------------------------------------------------------
# Forward against the reference, and the switches.
# --------------------------------------------------------------------------
@pytest.mark.parametrize('dilations,low_hw,high_hw', [
    ((1, 6, 12, 18), (9, 11), (3, 3)),  # OS 16 rates on a small feature
    ((1, 2, 3), (13, 15), (7, 8)),  # small rates: the taps matter
])
def test_head_matches_reference(dilations, low_hw, high_hw):
    torch.manual_seed(0)
    head = randomize_(build_head(dilations=dilations), 1).eval()
    inputs = make_inputs(2, low_hw, high_hw)
    with torch.no_grad():
        out = head(inputs)
        ref = ref_head(head, inputs, rates=dilations[1:])
    assert out.shape == (2, NUM_CLASSES, *low_hw)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        # The reference is sensitive to what it checks.
        pool_last = ref_head(head, inputs, rates=dilations[1:],
                             pool_last=True)
        half_pixel = ref_head(head, inputs, rates=dilations[1:],
                              align_corners=False)
    assert (out - pool_last).abs().max() > 1e-3
    assert (out - half_pixel).abs().max() > 1e-3


def test_head_structure():
    torch.manual_seed(0)
    head = build_head(dilations=(1, 6, 12, 18))
    assert len(head.aspp) == 4
    assert head.image_pooling.conv.kernel_size == (1, 1)
    assert head.aspp[0].conv.kernel_size == (1, 1)
    for branch, rate in zip(head.aspp[1:], (6, 12, 18)):
        dw = branch.depthwise_conv.conv
        pw = branch.pointwise_conv.conv
        assert dw.groups == dw.in_channels == 2048
        assert (dw.kernel_size, dw.dilation, dw.padding, dw.stride) == (
            (3, 3), (rate, rate), (rate, rate), (1, 1))
        assert pw.kernel_size == (1, 1) and pw.out_channels == CHANNELS
    assert head.concat_projection.conv.in_channels == 5 * CHANNELS
    assert head.feature_projection0.conv.in_channels == 256
    assert head.feature_projection0.conv.out_channels == 48
    assert head.decoder_conv0.depthwise_conv.conv.in_channels == \
        CHANNELS + 48
    assert head.decoder_conv1.pointwise_conv.conv.out_channels == CHANNELS
    # Only the logits conv has a bias; every BN has TF's head epsilon.
    biased = [n for n, m in head.named_modules()
              if isinstance(m, nn.Conv2d) and m.bias is not None]
    assert biased == ['conv_seg']
    assert head.conv_seg.kernel_size == (1, 1)
    bns = [m for m in head.modules() if isinstance(m, _BatchNorm)]
    assert all(m.eps == HEAD_EPS for m in bns)
    # No ReLU is in place on a tensor something else still reads: the
    # reference comparison covers that numerically.


@pytest.mark.parametrize('sep_aspp,sep_dec,image_level', [
    (False, True, True),
    (True, False, True),
    (True, True, False),
    (False, False, False),
])
def test_head_switches(sep_aspp, sep_dec, image_level):
    torch.manual_seed(0)
    dilations = (1, 2, 3)
    head = build_head(dilations=dilations, aspp_with_separable_conv=sep_aspp,
                      decoder_use_separable_conv=sep_dec,
                      add_image_level_feature=image_level)
    randomize_(head, 2).eval()
    for branch, rate in zip(head.aspp[1:], dilations[1:]):
        convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
        if sep_aspp:
            assert len(convs) == 2 and convs[0].groups == 2048
        else:
            assert len(convs) == 1
            assert (convs[0].groups, convs[0].kernel_size, convs[0].dilation,
                    convs[0].padding) == (1, (3, 3), (rate, rate),
                                          (rate, rate))
    for conv in (head.decoder_conv0, head.decoder_conv1):
        convs = [m for m in conv.modules() if isinstance(m, nn.Conv2d)]
        if sep_dec:
            assert len(convs) == 2 and convs[0].groups == convs[0].in_channels
        else:
            assert len(convs) == 1
            assert (convs[0].groups, convs[0].kernel_size, convs[0].dilation,
                    convs[0].padding) == (1, (3, 3), (1, 1), (1, 1))
    n_branches = len(dilations) + int(image_level)
    assert head.concat_projection.conv.in_channels == n_branches * CHANNELS
    if not image_level:
        assert not any(n.startswith('image_pooling')
                       for n, _ in head.named_parameters())
    inputs = make_inputs(2, (13, 15), (7, 8), seed=3)
    with torch.no_grad():
        out = head(inputs)
        ref = ref_head(head, inputs, rates=dilations[1:], sep_aspp=sep_aspp,
                       sep_dec=sep_dec, image_level=image_level)
    assert out.shape == (2, NUM_CLASSES, 13, 15)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_deeplabv3_without_decoder():
    torch.manual_seed(0)
    head = build_head(dilations=(1, 2, 3), c1_in_channels=0)
    assert not any(n.startswith(('feature_projection', 'decoder'))
                   for n, _ in head.named_parameters())
    randomize_(head, 4).eval()
    inputs = make_inputs(2, (13, 15), (7, 8), seed=5)
    with torch.no_grad():
        out = head(inputs)
        ref = ref_head(head, inputs, rates=(2, 3), decoder=False)
    assert out.shape == (2, NUM_CLASSES, 7, 8)  # ASPP input resolution
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # The low-level input is not used at all.
    inputs[0] = torch.full_like(inputs[0], float('nan'))
    with torch.no_grad():
        assert torch.isfinite(head(inputs)).all()


# --------------------------------------------------------------------------
# Dropout: after concat_projection only (train), none before conv_seg.
# --------------------------------------------------------------------------
def _capture(head, inputs):
    seen = {}
    hooks = [
        head.concat_projection.register_forward_hook(
            lambda m, a, o: seen.setdefault('proj', o.detach().clone())),
        head.conv_seg.register_forward_pre_hook(
            lambda m, a: seen.setdefault('seg_in', a[0].detach().clone())),
    ]
    if getattr(head, 'decoder_conv0', None) is not None:
        hooks += [
            head.decoder_conv0.register_forward_pre_hook(
                lambda m, a: seen.setdefault('dec_in',
                                             a[0].detach().clone())),
            head.decoder_conv1.register_forward_hook(
                lambda m, a, o: seen.setdefault('dec_out',
                                                o.detach().clone())),
        ]
    try:
        head(inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _check_dropped(dropped, proj, p):
    """``dropped`` is inverted dropout of ``proj`` with probability p."""
    scaled = proj / (1 - p)
    zero = dropped.abs() <= 1e-6
    kept = (dropped - scaled).abs() <= 1e-5 * (1 + scaled.abs())
    assert (zero | kept).all()
    positive = proj > 1e-3
    frac = zero[positive].float().mean().item()
    assert positive.sum() > 200
    assert abs(frac - p) < 0.15, frac


@pytest.mark.parametrize('p', [0.5, 0.3])
def test_dropout_after_concat_projection(p):
    torch.manual_seed(0)
    # Without decoder: conv_seg sees exactly dropout(concat_projection).
    head = build_head(dilations=(1, 2, 3), c1_in_channels=0,
                      dropout_ratio=p).train()
    assert head.dropout is None  # BaseDecodeHead's dropout before conv_seg
    inputs = make_inputs(2, (9, 9), (9, 9), seed=6)
    seen = _capture(head, inputs)
    _check_dropped(seen['seg_in'], seen['proj'], p)
    head.eval()
    with torch.no_grad():
        seen = _capture(head, inputs)
    assert torch.equal(seen['seg_in'], seen['proj'])

    # With decoder: the dropped ASPP output is what gets resized (3x3 ->
    # 9x9 with align_corners hits the source pixels at rows/cols 0, 4, 8),
    # and nothing is dropped between decoder_conv1 and conv_seg.
    head = build_head(dilations=(1, 2, 3), dropout_ratio=p).train()
    inputs = make_inputs(2, (9, 9), (3, 3), seed=7)
    seen = _capture(head, inputs)
    grid = seen['dec_in'][:, :CHANNELS, ::4, ::4]
    proj = seen['proj']
    assert grid.shape == proj.shape
    scaled = proj / (1 - p)
    zero = grid.abs() <= 1e-6
    assert (zero | ((grid - scaled).abs() <= 1e-5 * (1 + scaled.abs()))).all()
    assert zero[proj > 1e-3].any()
    assert torch.equal(seen['seg_in'], seen['dec_out'])


def test_default_dropout_ratio_is_tf_keep_prob_0_9():
    torch.manual_seed(0)
    head = MODELS.build(dict(
        type='DeepLabV3PlusTFHead', in_channels=2048, in_index=1,
        channels=CHANNELS, dilations=(1, 2, 3), c1_in_channels=0,
        num_classes=NUM_CLASSES, align_corners=True,
        norm_cfg=dict(type='BN', eps=HEAD_EPS))).train()
    dropouts = [m for m in head.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == pytest.approx(0.1)


# --------------------------------------------------------------------------
# Loss with ignored pixels.
# --------------------------------------------------------------------------
def _samples(labels):
    return [SegDataSample(gt_sem_seg=PixelData(data=lab[None]))
            for lab in labels]


def _region_labels(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((n, h, w), 255, dtype=torch.long)
    region = torch.zeros((n, h, w), dtype=torch.bool)
    region[:, 2:6, 3:8] = True
    region[1, 0, 0] = True
    labels[region] = torch.randint(0, NUM_CLASSES, (int(region.sum()), ),
                                   generator=g)
    return labels, region


def _loss_and_logit_grad(head, inputs, labels):
    store = {}

    def keep(m, a, o):
        o.retain_grad()
        store['logits'] = o

    hook = head.conv_seg.register_forward_hook(keep)
    try:
        losses = head.loss(inputs, _samples(labels), dict())
    finally:
        hook.remove()
    losses['loss_ce'].backward()
    return losses['loss_ce'], store['logits']


def test_loss_ignores_255_mean_over_valid_pixels():
    torch.manual_seed(0)
    head = build_head(dilations=(1, 2, 3), loss_decode=dict(
        type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
        avg_non_ignore=True))
    randomize_(head, 8).eval()  # eval: deterministic (no dropout)
    inputs = make_inputs(2, (9, 11), (3, 3), seed=9)
    labels, region = _region_labels(2, 9, 11, seed=10)
    loss, logits = _loss_and_logit_grad(head, inputs, labels)
    assert logits.shape == (2, NUM_CLASSES, 9, 11)
    flat = logits.detach().permute(0, 2, 3, 1)[region]
    expected = F.cross_entropy(flat, labels[region])
    torch.testing.assert_close(loss.detach(), expected, atol=1e-6,
                               rtol=1e-6)
    grad = logits.grad.permute(0, 2, 3, 1)
    assert torch.equal(grad[~region], torch.zeros_like(grad[~region]))
    assert (grad[region].abs().sum(-1) > 0).all()


def test_loss_default_ce_divides_by_all_pixels():
    """mmseg's default CrossEntropyLoss (avg_non_ignore=False) sums over the
    valid pixels and divides by *all* pixels, ignored ones included."""
    torch.manual_seed(0)
    head = randomize_(build_head(dilations=(1, 2, 3)), 8).eval()
    inputs = make_inputs(2, (9, 11), (3, 3), seed=9)
    labels, region = _region_labels(2, 9, 11, seed=10)
    loss, logits = _loss_and_logit_grad(head, inputs, labels)
    flat = logits.detach().permute(0, 2, 3, 1)[region]
    expected = F.cross_entropy(flat, labels[region], reduction='sum') / \
        labels.numel()
    torch.testing.assert_close(loss.detach(), expected, atol=1e-6,
                               rtol=1e-6)
    grad = logits.grad.permute(0, 2, 3, 1)
    assert torch.equal(grad[~region], torch.zeros_like(grad[~region]))


# --------------------------------------------------------------------------
# The full segmentor config.
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def segmentor():
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    model = build_model(cfg.model, seed=0)
    return cfg, model.eval()


def test_config_values(segmentor):
    cfg, model = segmentor
    torch.manual_seed(0)
    assert type(model.backbone).__name__ == 'AlignedXception'
    assert model.backbone.arch == 65 and model.backbone.output_stride == 16
    assert type(model.decode_head).__name__ == 'DeepLabV3PlusTFHead'
    assert model.decode_head.align_corners is True
    assert model.align_corners is True
    assert model.decode_head.num_classes == 21
    assert model.decode_head.channels == 256
    assert model.decode_head.concat_projection.conv.in_channels == 1280
    assert model.decode_head.feature_projection0.conv.out_channels == 48
    assert model.decode_head.ignore_index == 255
    for part, eps in ((model.backbone, 1e-3), (model.decode_head, 1e-5)):
        bns = [m for m in part.modules() if isinstance(m, _BatchNorm)]
        assert bns
        for m in bns:
            assert isinstance(m, nn.BatchNorm2d) or \
                type(m).__name__ == '_BatchNormXd'
            assert m.eps == pytest.approx(eps, rel=0, abs=1e-12)
            assert m.momentum == pytest.approx(3e-4, rel=0, abs=1e-12)
    dp = model.data_preprocessor
    assert dp.pad_val == 0 and dp.seg_pad_val == 255


def test_config_preprocessing_is_tf_zero_mean_unit_range(segmentor):
    _, model = segmentor
    torch.manual_seed(0)
    values = torch.arange(256, dtype=torch.int64)
    bgr = torch.stack([values, (values + 85) % 256, (values + 170) % 256])
    img = bgr.view(3, 16, 16).to(torch.uint8)
    data = model.data_preprocessor(
        dict(inputs=[img], data_samples=[SegDataSample()]), False)
    out = data['inputs']
    assert out.shape == (1, 3, 16, 16) and out.dtype == torch.float32
    rgb = img.numpy()[::-1].astype(np.float32)
    tf = rgb * np.float32(2 / 255) - np.float32(1)  # TF, in float32
    diff = np.abs(out[0].numpy() - tf).max()
    assert diff <= 1.2e-7, diff
    # Channel order really is swapped (B and R differ by 170 levels).
    wrong = img.numpy().astype(np.float32) * np.float32(2 / 255) - 1
    assert np.abs(out[0].numpy() - wrong).max() > 0.5


def test_config_predict_resizes_to_input(segmentor):
    _, model = segmentor
    torch.manual_seed(0)
    randomize_(model.decode_head, 11)
    inputs = torch.randn(1, 3, 45, 61)
    samples = [SegDataSample(metainfo=dict(
        img_shape=(45, 61), ori_shape=(45, 61), pad_shape=(45, 61)))]
    with torch.no_grad():
        results = model.predict(inputs, samples)
        logits = model.decode_head(model.backbone(inputs))
    assert logits.shape == (1, 21, 12, 16)  # int((n - 1) / 4 + 1)
    seg = results[0].seg_logits.data
    assert seg.shape == (21, 45, 61)
    assert results[0].pred_sem_seg.data.shape == (1, 45, 61)
    expected = F.interpolate(logits, size=(45, 61), mode='bilinear',
                             align_corners=True)[0]
    torch.testing.assert_close(seg, expected, atol=1e-5, rtol=1e-5)
    half_pixel = F.interpolate(logits, size=(45, 61), mode='bilinear',
                               align_corners=False)[0]
    assert (seg - half_pixel).abs().max() > 1e-4
    assert torch.equal(results[0].pred_sem_seg.data[0], seg.argmax(0))


def test_config_loss_averages_over_non_ignored_pixels_like_tf(segmentor):
    """TF DeepLab (utils/train_utils.py,
    add_softmax_cross_entropy_loss_for_each_scale, top_k_percent_pixels=1):
    loss = sum(pixel_losses * not_ignore_mask) / sum(not_ignore_mask), i.e.
    the mean over the non-ignored pixels only."""
    _, model = segmentor
    torch.manual_seed(0)
    head = model.decode_head
    inputs = [torch.randn(2, 256, 9, 11), torch.randn(2, 2048, 3, 3)]
    labels, region = _region_labels(2, 9, 11, seed=12)
    loss, logits = _loss_and_logit_grad(head, inputs, labels)
    flat = logits.detach().permute(0, 2, 3, 1)[region]
    expected = F.cross_entropy(flat, labels[region])
    torch.testing.assert_close(
        loss.detach(), expected, atol=1e-6, rtol=1e-6,
        msg=lambda m: f'config loss {loss.item():.6f} != TF mean over '
        f'valid pixels {expected.item():.6f} (ratio '
        f'{(loss / expected).item():.4f}, valid fraction '
        f'{region.float().mean().item():.4f}): {m}')
