"""ResNet-v1-beta 50/101 exactly as TensorFlow DeepLab builds it.

Reference: ``research/deeplab/core/resnet_v1_beta.py`` through
``core/feature_extractor.py`` of tensorflow/models. The architecture is
data (:mod:`deeplabplus_mm.archs.resnet_v1_beta`) and module names are TF's
variable scopes (without the ``bottleneck_v1`` level)::

    resnet_v1_50/conv1_1/weights                   -> conv1_1.conv.weight
    resnet_v1_50/block3/unit_2/bottleneck_v1/conv2/BatchNorm/gamma
                                         -> block3.unit_2.conv2.bn.weight

Unlike mmseg's ``ResNetV1c`` (also a 3-conv stem), the stride of a block
sits on its *last* unit (identity shortcut subsampled by a strided slice),
``pool1`` pads as TF's 'SAME' (0 top/left, 1 bottom/right on even sizes),
the stem is 64-64-128 channels, block 4 uses ``multi_grid`` rates, and
TF DeepLab's BN settings for ResNet apply (eps 1e-5, decay 0.95:
``feature_extractor.extract_features``).
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

from ...archs import resnet_v1_beta as arch
from ..utils import (FrozenStagesMixin, checkpoint_forward, default_init_cfg,
                     feature_indices)
from ..utils.tf_padding import tf_same_pad


class BottleneckV1(BaseModule):
    """``resnet_v1_beta.bottleneck``: ``relu(shortcut + conv3(conv2(conv1(
    x))))`` with ``conv1`` 1x1 + BN + ReLU, ``conv2`` 3x3 at the unit's
    stride and rate + BN + ReLU, ``conv3`` 1x1 + BN; the shortcut is a 1x1
    conv + BN when the depth changes, else the input subsampled by the
    stride. Every 3x3 pads symmetrically by its rate (TF's ``conv2d_same``:
    explicit padding at stride 2, 'SAME' at stride 1; both the same here).

    ``forward`` returns ``(output, conv3_output)``: the latter is TF's
    ``<unit>/bottleneck_v1/conv3`` end point (the decoder's feature).
    """

    def __init__(self, setting: arch.UnitSetting, norm_cfg: dict,
                 act_cfg: dict, with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        self.stride = setting.stride
        self.with_cp = with_cp
        if setting.conv_shortcut:
            self.shortcut = ConvModule(setting.in_channels,
                                       setting.out_channels, 1,
                                       stride=setting.stride, bias=False,
                                       norm_cfg=norm_cfg, act_cfg=None)
        else:
            self.shortcut = None
        width = setting.bottleneck
        self.conv1 = ConvModule(setting.in_channels, width, 1, bias=False,
                                norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv2 = ConvModule(width, width, 3, stride=setting.stride,
                                padding=setting.rate, dilation=setting.rate,
                                bias=False, norm_cfg=norm_cfg,
                                act_cfg=act_cfg)
        self.conv3 = ConvModule(width, setting.out_channels, 1, bias=False,
                                norm_cfg=norm_cfg, act_cfg=None)
        self.act = nn.ReLU()  # out of place: see STYLE.md

    def _forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        elif self.stride > 1:  # 1x1 max pool at the stride
            shortcut = x[:, :, ::self.stride, ::self.stride]
        else:
            shortcut = x
        conv3 = self.conv3(self.conv2(self.conv1(x)))
        return self.act(shortcut + conv3), conv3

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return checkpoint_forward(self, self._forward, x, self.with_cp)


@MODELS.register_module()
class ResNetV1BetaTF(FrozenStagesMixin, BaseModule):
    """ResNet-v1-beta backbone of TensorFlow DeepLab (``resnet_v1_50_beta``,
    ``resnet_v1_101_beta``), the model zoo's ImageNet checkpoints.

    Features (indices for ``out_indices``; negative ones count from the
    end): ``0`` is the decoder's low-level feature for ``low_level_stride``
    (4: ``block1/unit_2/bottleneck_v1/conv3``, 256 channels, BN output
    before the residual sum); ``1..4`` the outputs of ``block1..block4``
    (``4``: 2048 channels, the DeepLab head's input).

    Args:
        depth (int): 50 or 101.
        output_stride (int): 8, 16 or 32.
        multi_grid (Sequence[int]): block 4's unit rates; the zoo's
            checkpoints are trained with (1, 2, 4).
        low_level_stride (int): 4, 8 or 16: which end point feature 0 is
            (TF's ``decoder_output_stride``).
        out_indices (Sequence[int]): Features to return. Default: (0, -1).
        frozen_stages (int): Freeze the root (0) and blocks 1..n (n);
            -1 freezes nothing.
        norm_cfg (dict): Norm layer config. Default: BN with TF DeepLab's
            ResNet epsilon 1e-5 and momentum 1 - 0.95.
        act_cfg (dict): Activation. Default: ReLU.
        norm_eval (bool): Keep norm layers in eval mode while training.
        with_cp (bool): Gradient checkpointing of every unit.
        init_cfg (dict | list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=...)`` for a backbone
            converted by ``tools/convert_tf_checkpoint.py``.
    """

    def __init__(self,
                 depth: int = 50,
                 output_stride: int = 16,
                 multi_grid: Sequence[int] = arch.DEFAULT_MULTI_GRID,
                 low_level_stride: int = 4,
                 out_indices: Sequence[int] = (0, -1),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(
                     type='BN', eps=1e-5, momentum=0.05, requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(default_init_cfg(init_cfg))
        if low_level_stride not in (4, 8, 16):
            raise ValueError('low_level_stride must be 4, 8 or 16, got '
                             f'{low_level_stride!r}')
        settings = arch.unit_settings(depth, output_stride, multi_grid)
        num_blocks = len(arch.BLOCKS[depth])
        self.out_indices = feature_indices(out_indices, num_blocks + 1)
        self.depth = depth
        self.output_stride = output_stride
        self._set_freezing(frozen_stages, num_blocks, norm_eval)

        channels = 3
        for scope, out, stride in arch.ROOT:
            self.add_module(
                scope, ConvModule(channels, out, 3, stride=stride, padding=1,
                                  bias=False, norm_cfg=norm_cfg,
                                  act_cfg=act_cfg))
            channels = out
        self.block_names: List[str] = []
        for setting in settings:
            block, unit = setting.scope.split('/')
            if block not in self.block_names:
                self.add_module(block, nn.Module())
                self.block_names.append(block)
            getattr(self, block).add_module(
                unit, BottleneckV1(setting, norm_cfg, act_cfg, with_cp))
        self.low_level_unit = arch.decoder_end_point(depth, low_level_stride)
        out_channels = {s.scope: s.out_channels for s in settings}
        block_out = {s.scope.split('/')[0]: s.out_channels for s in settings}
        self.feature_channels = [out_channels[self.low_level_unit]] + [
            block_out[b] for b in self.block_names
        ]
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        for scope, _, _ in arch.ROOT:
            x = getattr(self, scope)(x)
        # pool1: slim.max_pool2d 3x3/2 'SAME' (resnet_arg_scope)
        x = F.max_pool2d(tf_same_pad(x, 3, 2, value=float('-inf')), 3, 2)
        features = [None]
        for block in self.block_names:
            for unit, module in getattr(self, block).named_children():
                x, conv3 = module(x)
                if f'{block}/{unit}' == self.low_level_unit:
                    features[0] = conv3
            features.append(x)
        return tuple(features[i] for i in self.out_indices)

    def frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        root = [getattr(self, scope) for scope, _, _ in arch.ROOT]
        return root + [getattr(self, b)
                       for b in self.block_names[:self.frozen_stages]]
