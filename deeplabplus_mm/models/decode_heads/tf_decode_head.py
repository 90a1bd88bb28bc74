"""The base of TF DeepLab's decode heads: layers from their description in
:mod:`deeplabplus_mm.archs.heads`, and the decoder and logits that the
ASPP and the Dense Prediction Cell heads share.

Reference: ``research/deeplab/model.py`` (``refine_by_decoder``,
``get_branch_logits``) and ``core/utils.py`` (``split_separable_conv2d``).
Submodule names are TF's scopes, with ``<scope>_depthwise``/``_pointwise``
pairs held by one ``DepthwiseSeparableConvModule`` as ``depthwise_conv``/
``pointwise_conv``, and ``conv_seg`` for ``logits/semantic``.
"""
from typing import Iterable, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor

from ...archs.heads import HeadConv, decoder_layers


class TFDecodeHead(BaseDecodeHead):
    """A head on the backbone feature ``in_index``, refined by TF's decoder
    with the low-level feature ``c1_in_index``, then the 1x1 logits conv
    with bias (no dropout before it).

    The decoder (``c1_in_channels`` > 0) projects the low-level feature
    to ``c1_channels`` (1x1), resizes the head's output to its size with
    ``align_corners`` (set True, as TF), concatenates [head, low-level]
    and applies two 3x3 convs (separable: dw-BN-ReLU-pw-BN-ReLU).

    A subclass builds its own layers with :meth:`add_layers`, then calls
    :meth:`add_decoder`, and ends its ``forward`` with :meth:`decode`.

    Args:
        **kwargs: :class:`BaseDecodeHead` arguments (``in_channels``,
            ``in_index``, ``channels``, ``num_classes``, ``norm_cfg``...);
            ``input_transform`` must stay unset.
    """

    def __init__(self, **kwargs):
        super().__init__(dropout_ratio=0, **kwargs)
        if self.input_transform is not None:
            raise ValueError(f'{type(self).__name__} selects its inputs '
                             'with in_index and c1_in_index; leave '
                             'input_transform unset')

    def build_layer(self, layer: HeadConv) -> nn.Module:
        """The conv-BN-ReLU module of ``layer``, padded by its dilation."""
        kernel, dilation = layer.kernel_size, layer.dilation
        if isinstance(dilation, int):
            padding = dilation * (kernel - 1) // 2
        else:
            padding = tuple(d * (kernel - 1) // 2 for d in dilation)
        module = (DepthwiseSeparableConvModule
                  if layer.separable else ConvModule)
        return module(layer.in_channels, layer.out_channels, kernel,
                      padding=padding, dilation=dilation,
                      conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                      act_cfg=self.act_cfg)

    def add_layers(self, layers: Iterable[HeadConv]) -> None:
        """Builds each layer at its path (``name``, or ``name.i`` as item
        ``i`` of the ``nn.ModuleList`` ``name``, in order)."""
        for layer in layers:
            name, _, index = layer.path.partition('.')
            if not index:
                self.add_module(name, self.build_layer(layer))
                continue
            if name not in self._modules:
                self.add_module(name, nn.ModuleList())
            getattr(self, name).append(self.build_layer(layer))

    def add_decoder(self, c1_in_channels: int, c1_channels: int,
                    c1_in_index: int,
                    decoder_use_separable_conv: bool) -> None:
        """Builds ``refine_by_decoder``'s layers (none for
        ``c1_in_channels=0``, DeepLab v3)."""
        self.c1_in_index = c1_in_index
        layers = decoder_layers(self.channels, c1_in_channels, c1_channels,
                                decoder_use_separable_conv)
        self.add_layers(layers)
        if not layers:
            self.feature_projection0 = None

    def decode(self, out: Tensor, inputs: List[Tensor]) -> Tensor:
        """The decoder (if built) on the head's output, then the logits."""
        if self.feature_projection0 is not None:
            low_level = self.feature_projection0(inputs[self.c1_in_index])
            out = F.interpolate(out, size=low_level.shape[2:],
                                mode='bilinear',
                                align_corners=self.align_corners)
            out = torch.cat([out, low_level], dim=1)
            out = self.decoder_conv1(self.decoder_conv0(out))
        return self.cls_seg(out)
