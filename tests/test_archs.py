"""deeplabplus_mm.archs, the one description of the backbones' schedules and
the heads' layout: TF's output-stride rule written out, and the models
built from it holding exactly the parameters it describes, also for the
arguments no shipped config uses (tests/test_configs.py checks every
config's model)."""
import pytest
import torch
from mmseg.registry import MODELS

import deeplabplus_mm  # noqa: F401  (registers the models)
from deeplabplus_mm.archs import model_convs, state_shapes
from deeplabplus_mm.archs.layers import atrous_schedule

HEAD = dict(in_channels=64, channels=16, num_classes=3, in_index=1,
            norm_cfg=dict(type='BN', eps=1e-5), align_corners=True)


@pytest.mark.parametrize('strides,output_stride,expected', [
    # MobileNetV2's layers at OS 8: stride 1 from the target on, the rate
    # growing by the nominal stride of each layer that reached it
    ((2, 1, 2, 1, 2, 1, 2, 1, 1, 2, 1), 8,
     [(2, 1), (1, 1), (2, 1), (1, 1), (2, 1), (1, 1), (1, 1), (1, 2),
      (1, 2), (1, 2), (1, 4)]),
    ((2, 2, 2, 2, 2), 32, [(2, 1)] * 5),
    ((2, 2, 2, 2, 2), 16, [(2, 1)] * 4 + [(1, 1)]),
    ((2, 2, 2, 2, 2), None, [(2, 1)] * 5),
])
def test_atrous_schedule_is_tf_rule(strides, output_stride, expected):
    assert atrous_schedule(strides, output_stride) == expected


def test_atrous_schedule_unreachable_output_stride():
    with pytest.raises(ValueError, match='output stride 64'):
        atrous_schedule((2, 2, 2), 64)


def _assert_built_as_described(model_cfg, built):
    assert state_shapes(model_convs(model_cfg)) == {
        k: tuple(v.shape) for k, v in built.state_dict().items()}


def _segmentor(backbone, head):
    return dict(type='EncoderDecoder', backbone=backbone, decode_head=head)


@pytest.mark.parametrize('backbone', [
    dict(type='AlignedXception', arch=41, output_stride=8,
         multi_grid=(1, 2, 4)),
    dict(type='AlignedXception', arch=71, output_stride=32),
    dict(type='MobileNetV2TF', depth_multiplier=0.35, output_stride=8),
    dict(type='MobileNetV2TF', depth_multiplier=1.4, divisible_by=8),
])
def test_backbone_variants_hold_what_archs_describes(backbone):
    with torch.device('meta'):
        built = MODELS.build(backbone)
    assert state_shapes(model_convs(dict(backbone=backbone),
                                    backbone_only=True)) == {
        k: tuple(v.shape) for k, v in built.state_dict().items()}


@pytest.mark.parametrize('head', [
    dict(type='DeepLabV3PlusTFHead', dilations=(1, 2, 3),
         aspp_with_separable_conv=False, decoder_use_separable_conv=False,
         add_image_level_feature=False, c1_in_channels=24, c1_channels=8),
    dict(type='DeepLabV3PlusTFHead', dilations=(1, ), c1_in_channels=0),
    dict(type='DensePredictionCellHead', output_stride=8, c1_in_channels=24,
         c1_channels=8, decoder_use_separable_conv=False),
    dict(type='DensePredictionCellHead', branches=[(-1, (1, 2)), (0, (3, 1))],
         c1_in_channels=0),
    dict(type='LRASPPTFHead', c1_in_channels=24, image_pooling_crop_size=None),
])
def test_head_variants_hold_what_archs_describes(head):
    head = dict(HEAD, **head)
    backbone = dict(type='MobileNetV2TF', depth_multiplier=0.35)
    model_cfg = _segmentor(backbone, head)
    with torch.device('meta'):
        built = MODELS.build(head)
    expected = {k[len('decode_head.'):]: v
                for k, v in state_shapes(model_convs(model_cfg)).items()
                if k.startswith('decode_head.')}
    assert expected == {k: tuple(v.shape)
                        for k, v in built.state_dict().items()}


def test_heads_build_the_described_dilations():
    """The rates of the description reach the convs (padding = rate)."""
    with torch.device('meta'):
        dpc = MODELS.build(dict(HEAD, type='DensePredictionCellHead',
                                output_stride=8))
        aspp = MODELS.build(dict(HEAD, type='DeepLabV3PlusTFHead',
                                 dilations=(1, 12, 24, 36)))
    dw = dpc.branch1.depthwise_conv.conv
    assert (dw.dilation, dw.padding) == ((36, 30), (36, 30))
    convs = [branch.depthwise_conv.conv for branch in aspp.aspp[1:]]
    assert [(c.dilation, c.padding) for c in convs] == [
        ((r, r), (r, r)) for r in (12, 24, 36)]
