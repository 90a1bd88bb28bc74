"""Dense Prediction Cell head of TF DeepLab (Xception-71 Cityscapes models).

Reference: ``research/deeplab/core/dense_prediction_cell.py``
(``DensePredictionCell.build_cell``), the searched cell
``core/dense_prediction_cell_branch5_top1_cityscapes.json``, and
``model.extract_features`` / ``refine_by_decoder`` for what surrounds it.
Submodule names follow TF's scopes: ``meta_architecture/branch<i>_depthwise``
/ ``_pointwise`` -> ``branch<i>.depthwise_conv`` / ``.pointwise_conv``,
``meta_architecture/concat_projection`` -> ``concat_projection``, then the
decoder of :class:`TFDecodeHead`; the layers are
:func:`deeplabplus_mm.archs.heads.dpc_layers`.
"""
from typing import List, Sequence

import torch
import torch.nn as nn
from mmseg.registry import MODELS
from torch import Tensor

from ...archs.heads import DPC_CITYSCAPES, dpc_layers
from .tf_decode_head import TFDecodeHead


@MODELS.register_module()
class DensePredictionCellHead(TFDecodeHead):
    """Dense Prediction Cell + DeepLab v3+ decoder + logits.

    Each branch is a separable 3x3 conv (depthwise with the anisotropic
    rate ``(r_h, r_w) * 16 / output_stride``, BN, ReLU, pointwise 1x1 to
    ``channels``, BN, ReLU) on the backbone features (input -1) or on an
    earlier branch's output. The branch outputs are concatenated in order,
    dropped out (TF's ``dropout_on_concat_features``, keep 0.9) and
    projected by a 1x1 ``concat_projection`` (BN, ReLU). There is no
    image-level branch. TF's decoder and logits follow
    (:class:`TFDecodeHead`).

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
        super().__init__(**kwargs)
        layers = dpc_layers(self.in_channels, self.channels, branches,
                            output_stride)
        self.branch_inputs = [int(source) for source, _ in branches]
        self.add_layers(layers)
        self.concat_dropout = nn.Dropout(dropout_ratio)
        self.add_decoder(c1_in_channels, c1_channels, c1_in_index,
                         decoder_use_separable_conv)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        x = inputs[self.in_index]
        outputs = []
        for i, source in enumerate(self.branch_inputs):
            branch = getattr(self, f'branch{i}')
            outputs.append(branch(x if source < 0 else outputs[source]))
        out = self.concat_projection(
            self.concat_dropout(torch.cat(outputs, dim=1)))
        return self.decode(out, inputs)
