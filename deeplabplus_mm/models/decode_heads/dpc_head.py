"""Dense Prediction Cell head of TF DeepLab (Xception-71 Cityscapes models).

Reference: ``research/deeplab/core/dense_prediction_cell.py``
(``DensePredictionCell.build_cell``), the searched cell
``core/dense_prediction_cell_branch5_top1_cityscapes.json``, and
``model.extract_features`` / ``refine_by_decoder`` for what surrounds it.
Submodule names follow TF's scopes: ``meta_architecture/branch<i>_depthwise``
/ ``_pointwise`` -> ``branch<i>.depthwise_conv`` / ``.pointwise_conv``,
``meta_architecture/concat_projection`` -> ``concat_projection``, the decoder
and ``conv_seg`` as in :class:`DeepLabV3PlusTFHead`.
"""
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor

from ...archs.heads import DPC_CITYSCAPES


@MODELS.register_module()
class DensePredictionCellHead(BaseDecodeHead):
    """Dense Prediction Cell + DeepLab v3+ decoder + logits.

    Each branch is a separable 3x3 conv (depthwise with the anisotropic
    rate ``(r_h, r_w) * 16 / output_stride``, BN, ReLU, pointwise 1x1 to
    ``channels``, BN, ReLU) on the backbone features (input -1) or on an
    earlier branch's output. The branch outputs are concatenated in order,
    dropped out (TF's ``dropout_on_concat_features``, keep 0.9) and
    projected by a 1x1 ``concat_projection`` (BN, ReLU). There is no
    image-level branch. The decoder (``c1_in_channels`` > 0) and logits are
    TF's ``refine_by_decoder`` and ``logits/semantic``: 1x1 projection of
    the low-level feature to ``c1_channels``, ``align_corners`` resize of
    the cell's output to it, concat [cell, low-level], two 3x3 convs.

    Args:
        branches (Sequence): ``(input, (rate_h, rate_w))`` per branch at
            output stride 16; input -1 is the backbone feature, ``i`` the
            output of branch ``i``. Default: TF's Cityscapes cell
            (``dense_prediction_cell_branch5_top1_cityscapes.json``).
        output_stride (int): The backbone's output stride; rates are
            multiplied by ``16 // output_stride`` (TF's
            ``conv_rate_multiplier``).
        c1_in_channels (int): Channels of the low-level feature; 0 builds
            no decoder.
        c1_channels (int): Decoder projection channels (TF: 48).
        c1_in_index (int): Index of the low-level feature in the inputs.
        decoder_use_separable_conv (bool): Separable or dense decoder convs.
        dropout_ratio (float): Dropout on the concatenated branches (TF's
            keep_prob 0.9 -> 0.1). No dropout precedes the logits conv.
        **kwargs: :class:`BaseDecodeHead` arguments (``in_channels``,
            ``in_index``, ``channels`` = 256, ``num_classes``, ``norm_cfg``
            (TF: BN eps 1e-5), ``align_corners`` (set True, as TF)...).
    """

    def __init__(self,
                 branches: Sequence = DPC_CITYSCAPES,
                 output_stride: int = 16,
                 c1_in_channels: int = 256,
                 c1_channels: int = 48,
                 c1_in_index: int = 0,
                 decoder_use_separable_conv: bool = True,
                 dropout_ratio: float = 0.1,
                 **kwargs):
        super().__init__(dropout_ratio=0, **kwargs)
        if self.input_transform is not None:
            raise ValueError('DensePredictionCellHead selects its inputs '
                             'with in_index and c1_in_index; leave '
                             'input_transform unset')
        if output_stride not in (4, 8, 16):
            raise ValueError('output_stride must be 4, 8 or 16 (TF: rates '
                             f'x 16 // output_stride), got {output_stride!r}')
        if c1_in_channels < 0 or (c1_in_channels and c1_channels <= 0):
            raise ValueError('c1_in_channels must be >= 0 and c1_channels '
                             '> 0 when a decoder is built')
        multiplier = 16 // output_stride
        self.branch_inputs = []
        self.branch_rates = []
        for i, (source, rate) in enumerate(branches):
            source = int(source)
            if not -1 <= source < i:
                raise ValueError(f'branch {i} reads branch {source}, which '
                                 'is not an earlier branch (or -1)')
            rate_h, rate_w = (int(r) * multiplier for r in rate)
            in_channels = self.in_channels if source < 0 else self.channels
            self.add_module(
                f'branch{i}',
                DepthwiseSeparableConvModule(
                    in_channels, self.channels, 3,
                    padding=(rate_h, rate_w), dilation=(rate_h, rate_w),
                    conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg))
            self.branch_inputs.append(source)
            self.branch_rates.append((rate_h, rate_w))
        if not self.branch_inputs:
            raise ValueError('the cell needs at least one branch')
        conv_kwargs = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                           act_cfg=self.act_cfg)
        self.concat_dropout = nn.Dropout(dropout_ratio)
        self.concat_projection = ConvModule(
            self.channels * len(self.branch_inputs), self.channels, 1,
            **conv_kwargs)
        self.c1_in_index = c1_in_index
        if c1_in_channels:

            def conv3x3(in_channels):
                module = (DepthwiseSeparableConvModule
                          if decoder_use_separable_conv else ConvModule)
                return module(in_channels, self.channels, 3, padding=1,
                              **conv_kwargs)

            self.feature_projection0 = ConvModule(c1_in_channels,
                                                  c1_channels, 1,
                                                  **conv_kwargs)
            self.decoder_conv0 = conv3x3(self.channels + c1_channels)
            self.decoder_conv1 = conv3x3(self.channels)
        else:
            self.feature_projection0 = None

    def forward(self, inputs: List[Tensor]) -> Tensor:
        x = inputs[self.in_index]
        outputs = []
        for i, source in enumerate(self.branch_inputs):
            branch = getattr(self, f'branch{i}')
            outputs.append(branch(x if source < 0 else outputs[source]))
        out = self.concat_projection(
            self.concat_dropout(torch.cat(outputs, dim=1)))
        if self.feature_projection0 is not None:
            low_level = self.feature_projection0(inputs[self.c1_in_index])
            out = F.interpolate(out, size=low_level.shape[2:],
                                mode='bilinear',
                                align_corners=self.align_corners)
            out = torch.cat([out, low_level], dim=1)
            out = self.decoder_conv1(self.decoder_conv0(out))
        return self.cls_seg(out)
