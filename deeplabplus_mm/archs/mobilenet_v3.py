"""MobileNetV3 Large / Small and EdgeTPU-MobileNet as TF DeepLab builds them.

``nets/mobilenet/mobilenet_v3.py`` (``V3_LARGE``, ``V3_SMALL``,
``V3_EDGETPU``) through ``deeplab/core/feature_extractor.py``
(``mobilenet_v3_large_seg``, ``mobilenet_v3_small_seg``,
``mobilenet_edgetpu``):

* the segmentation variants of Large / Small halve the outputs of the last
  three blocks and of the final 1x1 conv and give those blocks explicit
  expansion widths (336, 480, 480 / 144, 288, 288 at depth multiplier 1);
* the networks end at ``layer_17`` (Large: the 1x1 ``Conv_1``, 480),
  ``layer_13`` (Small: ``Conv_1``, 288) and ``layer_24`` (EdgeTPU:
  ``Conv_1``, 1280): no pooling, no classifier;
* every ``num_outputs`` is ``_make_divisible(n * depth_multiplier, 8, 8)``,
  every expansion width ``_make_divisible(c_in * factor, 8)`` and every
  squeeze-excite width ``_make_divisible(width / 4, 8)``;
* output stride -> stride 1 + atrous rate by ``mobilenet.mobilenet_base``'s
  rule (:func:`.layers.atrous_schedule`; the rate reaches kxk depthwise
  convs only; a fused block's strided kxk conv keeps its nominal stride, so
  fused blocks must come before the output stride is reached).

Read by :class:`deeplabplus_mm.models.MobileNetV3TF` and by the converter.
"""
from typing import List, NamedTuple, Optional

from .layers import ConvSpec, atrous_schedule
from .mobilenet_v2 import block_scope, make_divisible

RELU, HSWISH = 'relu', 'hard_swish'


class Op(NamedTuple):
    """One entry of a TF ``conv_defs['spec']``: ``slim.conv2d`` (``ef`` None)
    or ``expanded_conv`` (``mbv3_op``, ``mbv3_op_se``, ``mbv3_fused``)."""
    out: int  # num_outputs before the depth multiplier
    kernel: int
    stride: int = 1
    act: str = RELU
    ef: Optional[float] = None  # expansion factor of the block's input
    se: bool = False  # squeeze-excite after the depthwise conv
    fused: bool = False  # kxk expand conv, no depthwise (mbv3_fused)
    residual: bool = True


def _conv(out, kernel, stride=1, act=RELU):
    return Op(out, kernel, stride, act)


def _block(ef, out, kernel, stride=1, act=RELU, se=False, **kwargs):
    return Op(out, kernel, stride, act, ef, se, **kwargs)


_LARGE = [
    _conv(16, 3, 2, HSWISH),
    _block(1, 16, 3), _block(4, 24, 3, 2), _block(3, 24, 3),
    _block(3, 40, 5, 2, se=True), _block(3, 40, 5, se=True),
    _block(3, 40, 5, se=True),
    _block(6, 80, 3, 2, HSWISH), _block(2.5, 80, 3, 1, HSWISH),
    _block(184 / 80., 80, 3, 1, HSWISH), _block(184 / 80., 80, 3, 1, HSWISH),
    _block(6, 112, 3, 1, HSWISH, True), _block(6, 112, 3, 1, HSWISH, True),
    _block(6, 160, 5, 2, HSWISH, True), _block(6, 160, 5, 1, HSWISH, True),
    _block(6, 160, 5, 1, HSWISH, True),
    _conv(960, 1, 1, HSWISH),
]
_SMALL = [
    _conv(16, 3, 2, HSWISH),
    _block(1, 16, 3, 2, se=True), _block(72. / 16, 24, 3, 2),
    _block(88. / 24, 24, 3),
    _block(4, 40, 5, 2, HSWISH, True), _block(6, 40, 5, 1, HSWISH, True),
    _block(6, 40, 5, 1, HSWISH, True), _block(3, 48, 5, 1, HSWISH, True),
    _block(3, 48, 5, 1, HSWISH, True), _block(6, 96, 5, 2, HSWISH, True),
    _block(6, 96, 5, 1, HSWISH, True), _block(6, 96, 5, 1, HSWISH, True),
    _conv(576, 1, 1, HSWISH),
]
_EDGETPU = (
    [_conv(32, 3, 2),
     _block(1, 16, 3, fused=True), _block(8, 32, 3, 2, fused=True)] +
    [_block(4, 32, 3, fused=True)] * 3 + [_block(8, 48, 3, 2, fused=True)] +
    [_block(4, 48, 3, fused=True)] * 3 +
    [_block(8, 96, 3, 2)] + [_block(4, 96, 3)] * 3 +
    [_block(8, 96, 3, residual=False)] + [_block(4, 96, 3)] * 3 +
    [_block(8, 160, 5, 2)] + [_block(4, 160, 5)] * 3 + [_block(8, 192, 3)] +
    [_conv(1280, 1)])


def _segmentation(spec, halved):
    """feature_extractor.mobilenet_v3_{large,small}_seg: halve the outputs
    of the layers ``halved`` (spec indices: (layer, expansion width) with
    width None for the final conv) and set the blocks' factor to ``width /
    (the previous layer's halved outputs)``."""
    spec = list(spec)
    for index, width in halved:
        op = spec[index]._replace(out=spec[index].out / 2)
        if width is not None:
            op = op._replace(ef=width / spec[index - 1].out)
        spec[index] = op
    return spec


# arch -> (TF root scope, spec, decoder end points: the decoder's low-level
# feature for each decoder output stride is layer_N/depthwise_output)
ARCHS = {
    'large': ('MobilenetV3', _segmentation(
        _LARGE, [(13, 336), (14, 480), (15, 480), (16, None)]),
        {4: 'layer_4', 8: 'layer_7', 16: 'layer_13'}),
    'small': ('MobilenetV3', _segmentation(
        _SMALL, [(9, 144), (10, 288), (11, 288), (12, None)]),
        {4: 'layer_2', 8: 'layer_4', 16: 'layer_9'}),
    'edgetpu': ('MobilenetEdgeTPU', _EDGETPU, {}),
}


class LayerSetting(NamedTuple):
    """One layer as built for a depth multiplier and output stride."""
    scope: str  # 'Conv', 'Conv_1' or 'expanded_conv[_k]'
    end_point: str  # 'layer_1' ...
    in_channels: int
    expand_channels: int  # == in_channels: no expand conv
    out_channels: int
    kernel: int
    stride: int  # after the output-stride rule
    rate: int  # atrous rate of the depthwise conv
    act: str  # 'relu' or 'hard_swish' (project convs are linear)
    se_channels: int  # squeeze-excite width; 0: none
    fused: bool
    residual: bool  # output = project(...) + input

    @property
    def is_block(self) -> bool:
        return self.scope.startswith('expanded_conv')

    @property
    def has_expand(self) -> bool:
        return self.is_block and self.expand_channels > self.in_channels


def layer_settings(arch: str = 'large',
                   depth_multiplier: float = 1.0,
                   output_stride: Optional[int] = 32) -> List[LayerSetting]:
    """The layers of ``arch`` ('large', 'small', 'edgetpu') up to DeepLab's
    final end point.

    Args:
        depth_multiplier: TF's ``depth_multiplier`` (zoo: 1.0; EdgeTPU-slim
            0.75).
        output_stride: 8, 16 or 32 (None: no atrous conv, OS 32).
    """
    if arch not in ARCHS:
        raise ValueError(f'arch must be one of {sorted(ARCHS)}, got '
                         f'{arch!r}')
    if depth_multiplier <= 0:
        raise ValueError(f'depth_multiplier must be > 0, got '
                         f'{depth_multiplier!r}')
    if output_stride is not None and output_stride not in (8, 16, 32):
        raise ValueError('output_stride must be 8, 16 or 32, got '
                         f'{output_stride!r}')
    spec = ARCHS[arch][1]
    schedule = atrous_schedule([op.stride for op in spec], output_stride)
    layers, in_channels, num_convs, num_blocks = [], 3, 0, 0
    for n, (op, (layer_stride, layer_rate)) in enumerate(zip(spec, schedule)):
        out_channels = make_divisible(op.out * depth_multiplier, 8)
        if op.ef is None:
            scope = 'Conv' if num_convs == 0 else f'Conv_{num_convs}'
            num_convs += 1
            layers.append(LayerSetting(
                scope, f'layer_{n + 1}', in_channels, in_channels,
                out_channels, op.kernel, layer_stride, 1, op.act, 0, False,
                False))
        else:
            if op.fused and layer_stride != op.stride:
                raise ValueError(f'output stride {output_stride} reaches '
                                 f'the fused block layer_{n + 1}')
            width = max(make_divisible(in_channels * op.ef, 8), in_channels)
            se = make_divisible(width / 4, 8) if op.se else 0
            layers.append(LayerSetting(
                block_scope(num_blocks), f'layer_{n + 1}', in_channels, width,
                out_channels, op.kernel, layer_stride,
                1 if op.fused else layer_rate, op.act, se, op.fused,
                op.residual and layer_stride == 1
                and in_channels == out_channels))
            num_blocks += 1
        in_channels = out_channels
    return layers


def convs(arch: str = 'large', depth_multiplier: float = 1.0,
          **unused) -> List[ConvSpec]:
    """The convolutions of ``MobileNetV3TF``, in module order (output
    stride changes strides and rates only, never a parameter)."""
    specs = []
    for layer in layer_settings(arch, depth_multiplier, 32):
        if not layer.is_block:
            specs.append(ConvSpec(layer.scope.lower(), layer.in_channels,
                                  layer.out_channels, layer.kernel))
            continue
        width = layer.expand_channels
        if layer.has_expand:
            specs.append(ConvSpec(f'{layer.scope}.expand', layer.in_channels,
                                  width,
                                  layer.kernel if layer.fused else 1))
        if not layer.fused:
            specs.append(ConvSpec(f'{layer.scope}.depthwise', width, width,
                                  layer.kernel, groups=width))
        if layer.se_channels:
            se = f'{layer.scope}.squeeze_excite'
            specs += [
                ConvSpec(f'{se}.squeeze', width, layer.se_channels, 1,
                         norm=False, bias=True),
                ConvSpec(f'{se}.excite', layer.se_channels, width, 1,
                         norm=False, bias=True)]
        specs.append(ConvSpec(f'{layer.scope}.project', width,
                              layer.out_channels, 1))
    return specs
