"""DeepLab v3+ head exactly as TensorFlow DeepLab builds it.

Reference: ``research/deeplab/model.py`` (``extract_features``,
``refine_by_decoder``, ``get_branch_logits``) and ``core/utils.py``
(``split_separable_conv2d``). Submodule names follow TF's variable scopes
(``image_pooling``, ``aspp0``, ``aspp1``..., ``concat_projection``,
``feature_projection0``, ``decoder_conv0``/``1``; ``conv_seg`` is
``logits/semantic``), with ``<scope>_depthwise``/``_pointwise`` pairs held by
one :class:`DepthwiseSeparableConvModule` as ``depthwise_conv``/
``pointwise_conv``.
"""
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class DeepLabV3PlusTFHead(BaseDecodeHead):
    """ASPP with image pooling, decoder and logits of TF DeepLab v3+.

    Order and numerics of TF: the image-level branch (global average, 1x1
    conv, BN, ReLU, broadcast) comes *first* in the concatenation, then
    ``aspp0`` (1x1) and one 3x3 atrous branch per rate; a 1x1
    ``concat_projection`` and dropout follow. The decoder projects the
    low-level feature to ``c1_channels`` (48), resizes the ASPP output to the
    low-level size with ``align_corners=True``, concatenates [ASPP, low-level]
    and applies two 3x3 convs (separable: dw-BN-ReLU-pw-BN-ReLU) before the
    1x1 logits conv with bias. Set ``align_corners=True`` (as the configs do)
    so that every resize, the final one to the image size included, uses
    TF's ``resize_bilinear(align_corners=True)``.

    Args:
        dilations (Sequence[int]): ASPP rates, mmseg style: a 1 is the 1x1
            ``aspp0`` branch, the others TF's ``atrous_rates``. OS 16 uses
            (1, 6, 12, 18), OS 8 (1, 12, 24, 36).
        c1_in_channels (int): Channels of the low-level feature; 0 builds
            DeepLab v3 (no decoder).
        c1_channels (int): Decoder projection channels (TF: 48).
        c1_in_index (int): Index of the low-level feature in the inputs.
        aspp_with_separable_conv (bool): Separable (True, TF default for
            Xception) or dense 3x3 atrous branches.
        decoder_use_separable_conv (bool): Separable or dense decoder convs.
        add_image_level_feature (bool): Include the image pooling branch.
        dropout_ratio (float): Dropout after ``concat_projection`` (TF's
            ``keep_prob`` 0.9 -> 0.1). No dropout precedes the logits conv.
        **kwargs: :class:`BaseDecodeHead` arguments (``in_channels`` of the
            ASPP input, ``in_index``, ``channels`` = 256, ``num_classes``,
            ``norm_cfg`` (TF: BN eps 1e-5, momentum 3e-4), losses...).
    """

    def __init__(self,
                 dilations: Sequence[int] = (1, 6, 12, 18),
                 c1_in_channels: int = 256,
                 c1_channels: int = 48,
                 c1_in_index: int = 0,
                 aspp_with_separable_conv: bool = True,
                 decoder_use_separable_conv: bool = True,
                 add_image_level_feature: bool = True,
                 dropout_ratio: float = 0.1,
                 **kwargs):
        super().__init__(dropout_ratio=0, **kwargs)
        if self.input_transform is not None:
            raise ValueError('DeepLabV3PlusTFHead selects its two inputs '
                             'with in_index and c1_in_index; leave '
                             'input_transform unset')
        if c1_in_channels < 0 or (c1_in_channels and c1_channels <= 0):
            raise ValueError('c1_in_channels must be >= 0 and c1_channels '
                             '> 0 when a decoder is built')
        self.dilations = tuple(dilations)
        self.c1_in_index = c1_in_index
        self.add_image_level_feature = add_image_level_feature
        conv_kwargs = dict(
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

        def conv3x3(in_channels, dilation, separable):
            if separable:
                return DepthwiseSeparableConvModule(
                    in_channels, self.channels, 3, padding=dilation,
                    dilation=dilation, **conv_kwargs)
            return ConvModule(in_channels, self.channels, 3,
                              padding=dilation, dilation=dilation,
                              **conv_kwargs)

        if add_image_level_feature:
            self.image_pooling = ConvModule(self.in_channels, self.channels, 1,
                                            **conv_kwargs)
        self.aspp = nn.ModuleList()
        for rate in self.dilations:
            if rate == 1:
                branch = ConvModule(self.in_channels, self.channels, 1,
                                    **conv_kwargs)
            else:
                branch = conv3x3(self.in_channels, rate,
                                 aspp_with_separable_conv)
            self.aspp.append(branch)
        num_branches = len(self.dilations) + int(add_image_level_feature)
        self.concat_projection = ConvModule(self.channels * num_branches,
                                            self.channels, 1, **conv_kwargs)
        self.aspp_dropout = nn.Dropout(dropout_ratio)
        if c1_in_channels:
            self.feature_projection0 = ConvModule(c1_in_channels,
                                                  c1_channels, 1,
                                                  **conv_kwargs)
            self.decoder_conv0 = conv3x3(self.channels + c1_channels, 1,
                                         decoder_use_separable_conv)
            self.decoder_conv1 = conv3x3(self.channels, 1,
                                         decoder_use_separable_conv)
        else:
            self.feature_projection0 = None

    def forward(self, inputs: List[Tensor]) -> Tensor:
        x = inputs[self.in_index]
        branches = []
        if self.add_image_level_feature:
            pooled = self.image_pooling(x.mean(dim=(2, 3), keepdim=True))
            # resize_bilinear(align_corners=True) of a 1x1 map: a broadcast.
            branches.append(pooled.expand(-1, -1, *x.shape[2:]))
        branches.extend(branch(x) for branch in self.aspp)
        out = self.aspp_dropout(self.concat_projection(torch.cat(branches, 1)))
        if self.feature_projection0 is not None:
            low_level = self.feature_projection0(inputs[self.c1_in_index])
            out = F.interpolate(out, size=low_level.shape[2:],
                                mode='bilinear',
                                align_corners=self.align_corners)
            out = torch.cat([out, low_level], dim=1)
            out = self.decoder_conv1(self.decoder_conv0(out))
        return self.cls_seg(out)
