"""MobileNetV2 as TF DeepLab builds it, as data.

``nets/mobilenet/mobilenet_v2.V2_DEF`` through
``deeplab/core/feature_extractor._mobilenet_v2`` (rules:
``shared/tf_deeplab/README.md``, section MobileNetV2): the stem ``Conv`` and
the 17 ``expanded_conv`` blocks up to end point ``layer_18`` (the 1x1
``Conv_1`` of the classifier is not built), channels rounded by
``mobilenet._make_divisible``, output stride turned into stride 1 + atrous
rate by ``mobilenet.mobilenet_base``'s rule (:func:`.layers.atrous_schedule`). Read by
:class:`deeplabplus_mm.models.MobileNetV2TF` and by the converter.
"""
from typing import List, NamedTuple, Optional

from .layers import ConvSpec, atrous_schedule

# V2_DEF['spec'][0]: slim.conv2d 3x3, stride 2, 32 outputs.
STEM_CHANNELS = 32
# V2_DEF['spec'][1:18]: (expansion factor, num_outputs, stride, divisor of
# the expansion width). The first block uses expand_input(1,
# divisible_by=1), the others the default expand_input(6) (divisor 8).
BLOCKS = [(1, 16, 1, 1),
          (6, 24, 2, 8), (6, 24, 1, 8),
          (6, 32, 2, 8), (6, 32, 1, 8), (6, 32, 1, 8),
          (6, 64, 2, 8), (6, 64, 1, 8), (6, 64, 1, 8), (6, 64, 1, 8),
          (6, 96, 1, 8), (6, 96, 1, 8), (6, 96, 1, 8),
          (6, 160, 2, 8), (6, 160, 1, 8), (6, 160, 1, 8),
          (6, 320, 1, 8)]
# feature_extractor.networks_to_feature_maps['mobilenet_v2']: the decoder's
# low-level feature for each decoder output stride is the depthwise output
# (after BN and ReLU6) of layer_N = BLOCKS[N - 2].
DECODER_END_POINTS = {4: 'layer_4', 8: 'layer_7', 16: 'layer_14'}


def make_divisible(value: float, divisor: int,
                   min_value: Optional[int] = None) -> int:
    """``mobilenet._make_divisible``: round to a multiple of ``divisor``,
    at least ``min_value``, never more than 10 % below ``value``."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def block_scope(index: int) -> str:
    """TF scope of block ``index`` (0-based): expanded_conv, _1, _2, ..."""
    return 'expanded_conv' if index == 0 else f'expanded_conv_{index}'


class LayerSetting(NamedTuple):
    """One layer of ``mobilenet_base`` as built for a given output stride."""
    scope: str  # 'Conv' or 'expanded_conv[_k]' (under 'MobilenetV2/')
    end_point: str  # 'layer_1' ... 'layer_18'
    in_channels: int
    expand_channels: int  # depthwise width; == in_channels: no expand conv
    out_channels: int
    stride: int  # after the output-stride rule
    rate: int  # atrous rate of the 3x3 (depthwise) conv
    residual: bool  # output = project(...) + input

    @property
    def has_expand(self) -> bool:
        return self.scope != 'Conv' and self.expand_channels > self.in_channels


def layer_settings(depth_multiplier: float = 1.0,
                   output_stride: Optional[int] = 16,
                   divisible_by: Optional[int] = None) -> List[LayerSetting]:
    """The 18 layers (``Conv`` + 17 blocks) TF DeepLab builds.

    Args:
        depth_multiplier: TF's ``depth_multiplier`` (zoo: 1.0 and 0.5).
        output_stride: 8, 16 or 32 (None: no atrous conv, OS 32).
        divisible_by: TF's ``divisible_by`` flag; None: 8 for depth
            multiplier 1.0, else 1 (``feature_extractor._mobilenet_v2``),
            with ``min_depth`` 8 resp. 1 likewise.
    """
    if depth_multiplier <= 0:
        raise ValueError(f'depth_multiplier must be > 0, got '
                         f'{depth_multiplier!r}')
    if output_stride is not None and output_stride not in (8, 16, 32):
        raise ValueError('output_stride must be 8, 16 or 32, got '
                         f'{output_stride!r}')
    if divisible_by is None:
        divisible_by = 8 if depth_multiplier == 1.0 else 1
    min_depth = 8 if depth_multiplier == 1.0 else 1

    def depth(channels):
        return make_divisible(channels * depth_multiplier, divisible_by,
                              min_depth)

    specs = [('Conv', None, STEM_CHANNELS, 2, None)] + [
        (block_scope(i), t, c, s, d) for i, (t, c, s, d) in enumerate(BLOCKS)
    ]
    schedule = atrous_schedule([spec[3] for spec in specs], output_stride)
    layers, in_channels = [], 3
    for n, ((scope, factor, channels, _, divisor),
            (stride, rate)) in enumerate(zip(specs, schedule)):
        out_channels = depth(channels)
        expand = (in_channels if factor is None else make_divisible(
            in_channels * factor, divisor))
        layers.append(
            LayerSetting(
                scope, f'layer_{n + 1}', in_channels,
                max(expand, in_channels), out_channels, stride, rate,
                scope != 'Conv' and stride == 1
                and in_channels == out_channels))
        in_channels = out_channels
    return layers


def convs(depth_multiplier: float = 1.0,
          divisible_by: Optional[int] = None,
          **unused) -> List[ConvSpec]:
    """The convolutions of ``MobileNetV2TF``, in module order (output
    stride changes strides and rates only, never a parameter)."""
    specs = []
    for layer in layer_settings(depth_multiplier, 16, divisible_by):
        if layer.scope == 'Conv':
            specs.append(ConvSpec('conv', 3, layer.out_channels, 3))
            continue
        width = layer.expand_channels
        if layer.has_expand:
            specs.append(ConvSpec(f'{layer.scope}.expand',
                                  layer.in_channels, width, 1))
        specs.append(ConvSpec(f'{layer.scope}.depthwise', width, width, 3,
                              groups=width))
        specs.append(ConvSpec(f'{layer.scope}.project', width,
                              layer.out_channels, 1))
    return specs
