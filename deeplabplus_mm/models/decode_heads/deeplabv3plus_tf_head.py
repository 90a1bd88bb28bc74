"""DeepLab v3+ head exactly as TensorFlow DeepLab builds it.

Reference: ``research/deeplab/model.py`` (``extract_features``,
``refine_by_decoder``, ``get_branch_logits``). Submodule names follow TF's
variable scopes (``image_pooling``, ``aspp0``, ``aspp1``... as ``aspp.0``,
``aspp.1``..., ``concat_projection``, then the decoder of
:class:`TFDecodeHead`); the layers are :func:`deeplabplus_mm.archs.heads.
aspp_layers`.
"""
from typing import List, Sequence

import torch
import torch.nn as nn
from mmseg.registry import MODELS
from torch import Tensor

from ...archs.heads import aspp_layers
from .tf_decode_head import TFDecodeHead


@MODELS.register_module()
class DeepLabV3PlusTFHead(TFDecodeHead):
    """ASPP with image pooling, decoder and logits of TF DeepLab v3+.

    Order and numerics of TF: the image-level branch (global average, 1x1
    conv, BN, ReLU, broadcast) comes *first* in the concatenation, then
    ``aspp0`` (1x1) and one 3x3 atrous branch per rate; a 1x1
    ``concat_projection`` and dropout follow, then TF's decoder and logits
    (:class:`TFDecodeHead`). Set ``align_corners=True`` (as the configs do)
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
        super().__init__(**kwargs)
        self.add_image_level_feature = add_image_level_feature
        self.add_layers(
            aspp_layers(self.in_channels, self.channels, dilations,
                        aspp_with_separable_conv, add_image_level_feature))
        self.aspp_dropout = nn.Dropout(dropout_ratio)
        self.add_decoder(c1_in_channels, c1_channels, c1_in_index,
                         decoder_use_separable_conv)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        x = inputs[self.in_index]
        branches = []
        if self.add_image_level_feature:
            pooled = self.image_pooling(x.mean(dim=(2, 3), keepdim=True))
            # resize_bilinear(align_corners=True) of a 1x1 map: a broadcast.
            branches.append(pooled.expand(-1, -1, *x.shape[2:]))
        branches.extend(branch(x) for branch in self.aspp)
        out = self.aspp_dropout(self.concat_projection(torch.cat(branches, 1)))
        return self.decode(out, inputs)
