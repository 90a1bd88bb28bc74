"""MobileNetV2 exactly as TensorFlow DeepLab builds it.

Reference: ``research/slim/nets/mobilenet/{mobilenet,mobilenet_v2,
conv_blocks}.py`` through ``research/deeplab/core/feature_extractor.py`` of
tensorflow/models, and the rules in ``shared/tf_deeplab/README.md``
(section MobileNetV2). The architecture is data
(:mod:`deeplabplus_mm.archs.mobilenet_v2`), and module names are TF's
variable scopes::

    MobilenetV2/Conv/weights                          -> conv.conv.weight
    MobilenetV2/expanded_conv_3/depthwise/BatchNorm/gamma
                                   -> expanded_conv_3.depthwise.bn.weight

Unlike mmseg's ``MobileNetV2`` (registered beside this one), it pads as
TF's 'SAME' (0 top/left, 1 bottom/right on even sizes at stride 2), uses
BN eps 1e-3, keeps the backbone output linear (no ReLU after the last
``project``) and does not build the 1280-channel ``Conv_1``.
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

from ...archs import mobilenet_v2 as arch
from ..utils import (FrozenStagesMixin, checkpoint_forward, default_init_cfg,
                     feature_indices)
from ..utils.tf_padding import tf_same_pad


class TFSameConv(ConvModule):
    """A ``ConvModule`` whose 3x3 conv pads like TF's 'SAME': symmetric
    ``padding = dilation`` at stride 1 (built into the conv), the
    input-size dependent :func:`tf_same_pad` at stride 2."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 dilation=1, **kwargs):
        padding = dilation * (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size,
                         stride=stride, padding=padding, dilation=dilation,
                         bias=False, **kwargs)
        if stride > 1 and dilation > 1:
            raise ValueError('TF never combines stride > 1 with a rate')
        self.tf_kernel_size = kernel_size
        self.tf_stride = stride

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        if self.tf_stride > 1:
            x = tf_same_pad(x, self.tf_kernel_size, self.tf_stride)
        return super().forward(x, *args, **kwargs)


class ExpandedConv(BaseModule):
    """TF ``conv_blocks.expanded_conv`` (inverted residual).

    ``expand`` 1x1 (only when the expansion widens the input) -> BN ->
    ReLU6, ``depthwise`` 3x3 at ``stride`` / ``rate`` -> BN -> ReLU6,
    ``project`` 1x1 -> BN (linear), ``+ input`` when ``setting.residual``.
    ``forward`` returns ``(output, depthwise_output)``: the latter is TF's
    ``layer_N/depthwise_output`` end point, the decoder's low-level feature.
    """

    def __init__(self, setting: arch.LayerSetting, norm_cfg: dict,
                 act_cfg: dict, with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        self.residual = setting.residual
        self.with_cp = with_cp
        width = setting.expand_channels
        if setting.has_expand:
            self.expand = ConvModule(setting.in_channels, width, 1,
                                     bias=False, norm_cfg=norm_cfg,
                                     act_cfg=act_cfg)
        else:
            self.expand = None
        self.depthwise = TFSameConv(width, width, 3, stride=setting.stride,
                                    dilation=setting.rate, groups=width,
                                    norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.project = ConvModule(width, setting.out_channels, 1, bias=False,
                                  norm_cfg=norm_cfg, act_cfg=None)

    def _forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        out = self.expand(x) if self.expand is not None else x
        depthwise = self.depthwise(out)
        out = self.project(depthwise)
        if self.residual:
            out = out + x
        return out, depthwise

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return checkpoint_forward(self, self._forward, x, self.with_cp)


@MODELS.register_module()
class MobileNetV2TF(FrozenStagesMixin, BaseModule):
    """MobileNetV2 backbone of TensorFlow DeepLab (v3 / v3+).

    The layers are data (:func:`deeplabplus_mm.archs.mobilenet_v2.
    layer_settings`): channels are ``depth_multiplier`` times V2's, rounded
    as TF's ``_make_divisible``; output stride becomes stride 1 and an
    atrous rate on the depthwise convs in one loop, as
    ``mobilenet_base`` does (OS 16: ``expanded_conv_13`` stride 1,
    ``expanded_conv_14..16`` rate 2).

    Features (indices for ``out_indices``; negative ones count from the
    end): ``0`` is the decoder's low-level feature, TF's
    ``layer_N/depthwise_output`` for ``low_level_stride`` (4: the depthwise
    output of ``expanded_conv_2``, 144 channels at depth multiplier 1);
    ``1..18`` are the outputs of ``layer_1`` (``Conv``) .. ``layer_18``
    (``expanded_conv_16``, 320 channels, linear: the DeepLab head's input).

    Args:
        depth_multiplier (float): TF's ``depth_multiplier`` (1.0, 0.5...).
        output_stride (int): 8, 16 or 32.
        divisible_by (int, optional): TF's ``divisible_by``; None: 8 at
            depth multiplier 1.0, else 1.
        low_level_stride (int): 4, 8 or 16: which end point feature 0 is
            (TF's ``decoder_output_stride``).
        out_indices (Sequence[int]): Features to return. Default: (0, -1).
        frozen_stages (int): Freeze the first ``frozen_stages`` layers
            (1 = the stem ``Conv``); -1 freezes nothing.
        norm_cfg (dict): Norm layer config. Default: BN with TF's epsilon
            1e-3 and momentum 1 - 0.997 (``mobilenet.training_scope``).
        act_cfg (dict): Activation. Default: ReLU6.
        norm_eval (bool): Keep norm layers in eval mode while training.
        with_cp (bool): Gradient checkpointing of every block.
        init_cfg (dict | list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=...)`` for a backbone
            converted by ``tools/convert_tf_checkpoint.py``.
    """

    def __init__(self,
                 depth_multiplier: float = 1.0,
                 output_stride: int = 16,
                 divisible_by: Optional[int] = None,
                 low_level_stride: int = 4,
                 out_indices: Sequence[int] = (0, -1),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(
                     type='BN', eps=1e-3, momentum=3e-3, requires_grad=True),
                 act_cfg: dict = dict(type='ReLU6'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(default_init_cfg(init_cfg))
        if low_level_stride not in arch.DECODER_END_POINTS:
            raise ValueError('low_level_stride must be one of '
                             f'{sorted(arch.DECODER_END_POINTS)}, got '
                             f'{low_level_stride!r}')
        settings = arch.layer_settings(depth_multiplier, output_stride,
                                       divisible_by)
        # feature 0: the decoder's low-level feature, then each layer's
        self.out_indices = feature_indices(out_indices, len(settings) + 1)
        self._set_freezing(frozen_stages, len(settings), norm_eval)

        stem, blocks = settings[0], settings[1:]
        self.conv = TFSameConv(3, stem.out_channels, 3, stride=stem.stride,
                               norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.layer_names: List[str] = ['conv']  # module names, layer order
        for setting in blocks:
            self.add_module(setting.scope,
                            ExpandedConv(setting, norm_cfg, act_cfg,
                                         with_cp))
            self.layer_names.append(setting.scope)
        end_point = arch.DECODER_END_POINTS[low_level_stride]
        self.low_level_layer = [s.end_point for s in settings].index(end_point)
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.conv(x)
        features = [None, x]
        for i, name in enumerate(self.layer_names[1:], start=1):
            x, depthwise = getattr(self, name)(x)
            if i == self.low_level_layer:
                features[0] = depthwise
            features.append(x)
        return tuple(features[i] for i in self.out_indices)

    def frozen_modules(self) -> List[nn.Module]:
        return [getattr(self, name)
                for name in self.layer_names[:max(self.frozen_stages, 0)]]
