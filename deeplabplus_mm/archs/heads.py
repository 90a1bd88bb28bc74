"""DeepLab heads as lists of convolutions (pure data, see :mod:`.layers`).

* :func:`aspp_head_convs`: ``DeepLabV3PlusTFHead``, TF's
  ``model.extract_features`` (image pooling, ``aspp0``, atrous branches,
  ``concat_projection``), ``refine_by_decoder`` and the logits;
* :func:`dpc_head_convs`: ``DensePredictionCellHead``,
  ``core/dense_prediction_cell.py`` instead of the ASPP, with the same
  decoder and logits.
"""
from typing import List, Optional, Sequence, Tuple

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


def _decoder_and_logits(channels, num_classes, c1_in_channels, c1_channels,
                        decoder_use_separable_conv, out_channels=None):
    specs = []
    if c1_in_channels:
        specs.append(ConvSpec('feature_projection0', c1_in_channels,
                              c1_channels, 1))
        for i, cin in enumerate((channels + c1_channels, channels)):
            if decoder_use_separable_conv:
                specs += separable(f'decoder_conv{i}', cin, channels)
            else:
                specs.append(ConvSpec(f'decoder_conv{i}', cin, channels, 3))
    # mmseg's BaseDecodeHead.conv_seg (TF logits/semantic): bias, no BN.
    specs.append(ConvSpec('conv_seg', channels, out_channels or num_classes,
                          1, norm=False, bias=True))
    return specs


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
    specs = []
    if add_image_level_feature:
        specs.append(ConvSpec('image_pooling', in_channels, channels, 1))
    for i, rate in enumerate(dilations):
        if rate == 1:
            specs.append(ConvSpec(f'aspp.{i}', in_channels, channels, 1))
        elif aspp_with_separable_conv:
            specs += separable(f'aspp.{i}', in_channels, channels)
        else:
            specs.append(ConvSpec(f'aspp.{i}', in_channels, channels, 3))
    num_branches = len(dilations) + int(add_image_level_feature)
    specs.append(ConvSpec('concat_projection', channels * num_branches,
                          channels, 1))
    return specs + _decoder_and_logits(channels, num_classes, c1_in_channels,
                                       c1_channels,
                                       decoder_use_separable_conv,
                                       out_channels)


def dpc_head_convs(in_channels: int,
                   channels: int,
                   num_classes: int,
                   branches: Sequence = DPC_CITYSCAPES,
                   c1_in_channels: int = 256,
                   c1_channels: int = 48,
                   decoder_use_separable_conv: bool = True,
                   out_channels: Optional[int] = None,
                   **unused) -> List[ConvSpec]:
    """The convolutions of ``DensePredictionCellHead`` (same arguments)."""
    specs = []
    for i, (source, _) in enumerate(branches):
        cin = in_channels if source < 0 else channels
        specs += separable(f'branch{i}', cin, channels)
    specs.append(ConvSpec('concat_projection', channels * len(branches),
                          channels, 1))
    return specs + _decoder_and_logits(channels, num_classes, c1_in_channels,
                                       c1_channels,
                                       decoder_use_separable_conv,
                                       out_channels)
