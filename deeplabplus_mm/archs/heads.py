"""DeepLab heads as lists of layers (pure data, see :mod:`.layers`).

A head is a list of :class:`HeadConv` layers that the decode heads build
(:class:`deeplabplus_mm.models.decode_heads.TFDecodeHead`) and that the
converter turns into :class:`ConvSpec` records:

* :func:`aspp_layers`: TF's ``model.extract_features`` (image pooling,
  ``aspp0``, atrous branches, ``concat_projection``), the
  ``DeepLabV3PlusTFHead``;
* :func:`dpc_layers`: ``core/dense_prediction_cell.py`` instead of the
  ASPP, the ``DensePredictionCellHead``;
* :func:`decoder_layers`: ``model.refine_by_decoder``, shared by both;
  the logits (``conv_seg``) follow.

:func:`aspp_head_convs` and :func:`dpc_head_convs` take a head's config
arguments and give all its convolutions.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from .layers import ConvSpec, separable

# core/dense_prediction_cell_branch5_top1_cityscapes.json: one 3x3
# separable conv per branch, (input branch, -1 = backbone features;
# (rate_h, rate_w) at output stride 16).
DPC_CITYSCAPES: Tuple[Tuple[int, Tuple[int, int]], ...] = (
    (-1, (1, 6)),
    (0, (18, 15)),
    (1, (6, 3)),
    (0, (1, 1)),
    (0, (6, 21)),
)


class HeadConv(NamedTuple):
    """One layer of a head, conv-BN-ReLU: an mmcv ``ConvModule`` or, with
    ``separable``, a ``DepthwiseSeparableConvModule`` (depthwise and
    pointwise conv, BN and ReLU after each; TF's
    ``split_separable_conv2d``). 3x3 convs pad by their dilation (TF's
    'SAME' at stride 1).

    ``path`` is the module path in the head: ``name``, or ``name.i`` for
    item ``i`` of the ``nn.ModuleList`` ``name``.
    """
    path: str
    in_channels: int
    out_channels: int
    kernel_size: int = 1
    dilation: Union[int, Tuple[int, int]] = 1
    separable: bool = False

    def convs(self) -> List[ConvSpec]:
        if self.separable:
            return list(separable(self.path, self.in_channels,
                                  self.out_channels, self.kernel_size))
        return [ConvSpec(self.path, self.in_channels, self.out_channels,
                         self.kernel_size)]


def aspp_layers(in_channels: int,
                channels: int,
                dilations: Sequence[int] = (1, 6, 12, 18),
                aspp_with_separable_conv: bool = True,
                add_image_level_feature: bool = True) -> List[HeadConv]:
    """The ASPP: ``image_pooling`` (1x1 on the pooled features), then
    ``aspp.i`` per rate (1x1 for rate 1, else 3x3 atrous), then the 1x1
    ``concat_projection`` of all branches."""
    layers = []
    if add_image_level_feature:
        layers.append(HeadConv('image_pooling', in_channels, channels))
    for i, rate in enumerate(dilations):
        if rate == 1:
            layers.append(HeadConv(f'aspp.{i}', in_channels, channels))
        else:
            layers.append(HeadConv(f'aspp.{i}', in_channels, channels, 3,
                                   rate, aspp_with_separable_conv))
    layers.append(HeadConv('concat_projection', channels * len(layers),
                           channels))
    return layers


def dpc_layers(in_channels: int,
               channels: int,
               branches: Sequence = DPC_CITYSCAPES,
               output_stride: int = 16) -> List[HeadConv]:
    """The Dense Prediction Cell: ``branch<i>``, a separable 3x3 conv at
    the anisotropic rate ``(rate_h, rate_w) * 16 / output_stride`` (TF's
    ``conv_rate_multiplier``) on the backbone features (input -1) or on
    an earlier branch, then the 1x1 ``concat_projection`` of all branches.

    Raises:
        ValueError: an output stride other than 4, 8, 16, no branch, or a
            branch that reads itself or a later one.
    """
    if output_stride not in (4, 8, 16):
        raise ValueError('output_stride must be 4, 8 or 16 (TF: rates '
                         f'x 16 // output_stride), got {output_stride!r}')
    if not branches:
        raise ValueError('the cell needs at least one branch')
    multiplier = 16 // output_stride
    layers = []
    for i, (source, rate) in enumerate(branches):
        source = int(source)
        if not -1 <= source < i:
            raise ValueError(f'branch {i} reads branch {source}, which is '
                             'not an earlier branch (or -1)')
        layers.append(
            HeadConv(f'branch{i}', in_channels if source < 0 else channels,
                     channels, 3, tuple(int(r) * multiplier for r in rate),
                     separable=True))
    layers.append(HeadConv('concat_projection', channels * len(branches),
                           channels))
    return layers


def decoder_layers(channels: int,
                   c1_in_channels: int = 256,
                   c1_channels: int = 48,
                   decoder_use_separable_conv: bool = True
                   ) -> List[HeadConv]:
    """``refine_by_decoder``: the 1x1 ``feature_projection0`` of the
    low-level feature, then two 3x3 convs on [head output, projection]
    (``decoder_conv0``/``1``). None for ``c1_in_channels=0`` (DeepLab v3).

    Raises:
        ValueError: negative ``c1_in_channels`` or, with a decoder,
            ``c1_channels`` < 1.
    """
    if c1_in_channels < 0 or (c1_in_channels and c1_channels <= 0):
        raise ValueError('c1_in_channels must be >= 0 and c1_channels '
                         '> 0 when a decoder is built')
    if not c1_in_channels:
        return []
    sep = decoder_use_separable_conv
    return [HeadConv('feature_projection0', c1_in_channels, c1_channels),
            HeadConv('decoder_conv0', channels + c1_channels, channels, 3,
                     separable=sep),
            HeadConv('decoder_conv1', channels, channels, 3, separable=sep)]


def _with_logits(layers, channels, num_classes, out_channels):
    # mmseg's BaseDecodeHead.conv_seg (TF logits/semantic): bias, no BN.
    return [spec for layer in layers for spec in layer.convs()] + [
        ConvSpec('conv_seg', channels, out_channels or num_classes, 1,
                 norm=False, bias=True)
    ]


def aspp_head_convs(in_channels: int,
                    channels: int,
                    num_classes: int,
                    dilations: Sequence[int] = (1, 6, 12, 18),
                    c1_in_channels: int = 256,
                    c1_channels: int = 48,
                    aspp_with_separable_conv: bool = True,
                    decoder_use_separable_conv: bool = True,
                    add_image_level_feature: bool = True,
                    out_channels: Optional[int] = None,
                    **unused) -> List[ConvSpec]:
    """The convolutions of ``DeepLabV3PlusTFHead`` (same arguments)."""
    layers = aspp_layers(in_channels, channels, dilations,
                         aspp_with_separable_conv, add_image_level_feature)
    layers += decoder_layers(channels, c1_in_channels, c1_channels,
                             decoder_use_separable_conv)
    return _with_logits(layers, channels, num_classes, out_channels)


def dpc_head_convs(in_channels: int,
                   channels: int,
                   num_classes: int,
                   branches: Sequence = DPC_CITYSCAPES,
                   output_stride: int = 16,
                   c1_in_channels: int = 256,
                   c1_channels: int = 48,
                   decoder_use_separable_conv: bool = True,
                   out_channels: Optional[int] = None,
                   **unused) -> List[ConvSpec]:
    """The convolutions of ``DensePredictionCellHead`` (same arguments)."""
    layers = dpc_layers(in_channels, channels, branches, output_stride)
    layers += decoder_layers(channels, c1_in_channels, c1_channels,
                             decoder_use_separable_conv)
    return _with_logits(layers, channels, num_classes, out_channels)
