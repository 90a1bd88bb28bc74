"""The MobileNetV3 segmentation head of TF DeepLab (LR-ASPP), exactly as
``research/deeplab/model.py`` builds it with the model zoo's MobileNetV3
flags (layout and rules: :mod:`deeplabplus_mm.archs.lraspp`).

Its layers are :func:`~deeplabplus_mm.archs.lraspp.lraspp_layers`, named as
TF's scopes: ``image_pooling``, ``aspp0``, ``feature_projection0``
(``decoder/feature_projection0``) and ``conv_seg``
(``decoder/decoder_conv0``, whose output is the logits).
"""
from typing import List, Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.registry import MODELS
from torch import Tensor

from ...archs.lraspp import Q_SIGMOID_SCALE, lraspp_layers, pooling_kernel
from .tf_decode_head import TFDecodeHead


def _resize(x: Tensor, size) -> Tensor:
    """TF DeepLab's ``utils.resize_bilinear`` (always align_corners)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear',
                         align_corners=True)


@MODELS.register_module()
class LRASPPTFHead(TFDecodeHead):
    """Gated 1x1 branch + sum-merge decoder of TF DeepLab's MobileNetV3
    models.

    The backbone features ``x`` (output stride ``output_stride``) go through
    ``aspp0`` (1x1 conv, BN, ReLU) and are multiplied by a gate: the
    average of ``x`` over windows of a fixed size (``image_pooling_crop_size``
    scaled to the features, e.g. 769 -> 25 at output stride 32) moved by
    ``image_pooling_stride`` (no padding), a 1x1 conv with bias, q-sigmoid
    (``relu6(x + 3) * 0.16667``; plain sigmoid with
    ``image_se_uses_qsigmoid=False``), resized to the features' size with
    ``align_corners=True``. The gated branch is resized (align_corners) to
    the low-level feature's size and a 1x1 conv with bias (``conv_seg``)
    turns it into class scores; a 1x1 conv with bias of the low-level
    feature (``feature_projection0``) is added: that sum is the logits.
    No dropout.

    Because the pooling window is fixed, the gate varies over large images
    (1025x2049 at 769: a 3x9 grid) and images whose features are smaller
    than the window are refused (TF fails on them too): pad them, as the
    configs' ``test_cfg`` does.

    Args:
        c1_in_channels (int): Channels of the low-level feature.
        c1_in_index (int): Index of the low-level feature in the inputs.
        image_pooling_crop_size (Sequence[int], optional): TF's
            ``image_pooling_crop_size`` (h, w), which fixes the pooling
            window; None: global average pooling.
        image_pooling_stride (Sequence[int]): TF's ``image_pooling_stride``
            (h, w).
        output_stride (int): The backbone's output stride (the window is
            the crop size scaled by ``1 / output_stride``).
        image_se_uses_qsigmoid (bool): TF's ``image_se_uses_qsigmoid``.
        **kwargs: :class:`TFDecodeHead` arguments (``in_channels``,
            ``in_index``, ``channels`` = TF's ``aspp_convs_filters`` (128),
            ``num_classes``, ``norm_cfg`` (TF: BN eps 1e-5),
            ``align_corners`` (set True as TF, for the final resize)...).
    """

    def __init__(self,
                 c1_in_channels: int,
                 c1_in_index: int = 0,
                 image_pooling_crop_size: Optional[Sequence[int]] = (769,
                                                                     769),
                 image_pooling_stride: Sequence[int] = (4, 5),
                 output_stride: int = 32,
                 image_se_uses_qsigmoid: bool = True,
                 **kwargs):
        if kwargs.pop('dropout_ratio', 0):
            raise ValueError('TF\'s MobileNetV3 head has no dropout; '
                             'leave dropout_ratio 0')
        super().__init__(**kwargs)
        if output_stride not in (8, 16, 32):
            raise ValueError('output_stride must be 8, 16 or 32, got '
                             f'{output_stride!r}')
        for name, value in (('image_pooling_crop_size',
                             image_pooling_crop_size),
                            ('image_pooling_stride', image_pooling_stride)):
            if value is not None and (len(value) != 2 or min(value) < 1):
                raise ValueError(f'{name} must be two positive integers '
                                 f'(h, w), got {value!r}')
        self.c1_in_index = c1_in_index
        self.pool_kernel = pooling_kernel(image_pooling_crop_size,
                                          output_stride)
        self.image_pooling_stride = tuple(image_pooling_stride)
        self.image_se_uses_qsigmoid = image_se_uses_qsigmoid
        for spec in lraspp_layers(self.in_channels, self.channels,
                                  self.out_channels, c1_in_channels):
            if spec.path == 'conv_seg':  # BaseDecodeHead's
                continue
            if spec.norm:  # conv-BN-ReLU
                module = ConvModule(spec.in_channels, spec.out_channels,
                                    spec.kernel_size, conv_cfg=self.conv_cfg,
                                    norm_cfg=self.norm_cfg,
                                    act_cfg=self.act_cfg)
            else:
                module = nn.Conv2d(spec.in_channels, spec.out_channels,
                                   spec.kernel_size, bias=spec.bias)
            self.add_module(spec.path, module)

    def gate(self, x: Tensor) -> Tensor:
        """The image-level gate at the features' size."""
        if self.pool_kernel is None:
            pooled = x.mean(dim=(2, 3), keepdim=True)
        else:
            if (x.shape[2] < self.pool_kernel[0]
                    or x.shape[3] < self.pool_kernel[1]):
                raise ValueError(
                    f'LRASPPTFHead: features of {tuple(x.shape[2:])} are '
                    f'smaller than the image pooling window '
                    f'{self.pool_kernel} (image_pooling_crop_size at this '
                    'output stride); pad the input (test_cfg size) or set '
                    'image_pooling_crop_size')
            pooled = F.avg_pool2d(x, self.pool_kernel,
                                  self.image_pooling_stride)
        gate = self.image_pooling(pooled)
        if self.image_se_uses_qsigmoid:
            gate = F.relu6(gate + 3) * Q_SIGMOID_SCALE
        else:
            gate = gate.sigmoid()
        return _resize(gate, x.shape[2:])

    def forward(self, inputs: List[Tensor]) -> Tensor:
        x = inputs[self.in_index]
        low_level = inputs[self.c1_in_index]
        out = _resize(self.aspp0(x) * self.gate(x), low_level.shape[2:])
        return self.conv_seg(out) + self.feature_projection0(low_level)
