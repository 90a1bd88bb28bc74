"""MobileNetV3 Large / Small and EdgeTPU-MobileNet exactly as TensorFlow
DeepLab builds them.

Reference: ``research/slim/nets/mobilenet/{mobilenet,mobilenet_v3,
conv_blocks}.py`` through ``research/deeplab/core/feature_extractor.py``
(``mobilenet_v3_large_seg``, ``mobilenet_v3_small_seg``,
``mobilenet_edgetpu``, arg scope ``mobilenet_v2_arg_scope``) of
tensorflow/models. The architecture is data
(:mod:`deeplabplus_mm.archs.mobilenet_v3`), and module names are TF's
variable scopes::

    MobilenetV3/expanded_conv_3/depthwise/depthwise_weights
                                   -> expanded_conv_3.depthwise.conv.weight
    MobilenetV3/expanded_conv_3/squeeze_excite/Conv/biases
                            -> expanded_conv_3.squeeze_excite.squeeze.bias
    MobilenetEdgeTPU/Conv_1/BatchNorm/gamma -> conv_1.bn.weight

TF details kept: 'SAME' padding also at stride 2 (asymmetric on even
sizes, for 3x3 and 5x5 kernels), BN eps 1e-3, hard-swish as
``x * relu6(x + 3) * (1 / 6)``, squeeze-excite gating
``relu6(x + 3) * 0.16667`` (not 1 / 6) after a ReLU squeeze conv, both 1x1
with biases and no BN, linear ``project`` convs.
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

from ...archs import mobilenet_v3 as v3_arch
from ..utils import (FrozenStagesMixin, checkpoint_forward, default_init_cfg,
                     feature_indices)
from .mobilenet_v2_tf import TFSameConv

# conv_blocks / mobilenet_v3: the gating constant as TF writes it.
SE_GATE_SCALE = 0.16667


def hard_swish(x: Tensor) -> Tensor:
    """``mobilenet_v3.hard_swish``: ``x * relu6(x + 3) * float32(1 / 6)``,
    in TF's order of operations."""
    return x * F.relu6(x + 3.0) * (1.0 / 6.0)


ACTIVATIONS = {v3_arch.RELU: F.relu, v3_arch.HSWISH: hard_swish, None: None}


class TFConv(TFSameConv):
    """:class:`TFSameConv` (conv, BN) followed by one of TF's activations
    (``'relu'``, ``'hard_swish'`` or None: linear)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 dilation=1, groups=1, activation=None, norm_cfg=None):
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         dilation, groups=groups, norm_cfg=norm_cfg,
                         act_cfg=None)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        return x if self.activation is None else self.activation(x)


class SqueezeExcite(nn.Module):
    """``conv_blocks.squeeze_excite`` as V3 uses it: spatial mean, 1x1
    ``squeeze`` conv (TF ``Conv``) + ReLU, 1x1 ``excite`` conv (``Conv_1``)
    + ``relu6(x + 3) * 0.16667``, times the input."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, squeeze_channels, 1)
        self.excite = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        gate = F.relu(self.squeeze(x.mean((2, 3), keepdim=True)))
        gate = F.relu6(self.excite(gate) + 3.0) * SE_GATE_SCALE
        return x * gate


class ExpandedConvV3(BaseModule):
    """TF ``conv_blocks.expanded_conv`` as ``mbv3_op`` / ``mbv3_fused``
    configure it.

    ``expand`` (1x1, or the strided kxk conv of a fused block; only when the
    expansion widens the input) -> BN -> act, ``depthwise`` kxk at ``stride``
    / ``rate`` -> BN -> act (not in fused blocks), ``squeeze_excite``,
    ``project`` 1x1 -> BN (linear), ``+ input`` when ``setting.residual``.
    ``forward`` returns ``(output, depthwise_output)``: the latter is TF's
    ``layer_N/depthwise_output`` end point (before squeeze-excite).
    """

    def __init__(self, setting: v3_arch.LayerSetting, norm_cfg: dict,
                 with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        self.residual = setting.residual
        self.with_cp = with_cp
        width = setting.expand_channels
        self.expand = None
        if setting.has_expand:
            kernel, stride = ((setting.kernel, setting.stride)
                              if setting.fused else (1, 1))
            self.expand = TFConv(setting.in_channels, width, kernel, stride,
                                 activation=setting.act, norm_cfg=norm_cfg)
        self.depthwise = None
        if not setting.fused:
            self.depthwise = TFConv(width, width, setting.kernel,
                                    setting.stride, setting.rate,
                                    groups=width, activation=setting.act,
                                    norm_cfg=norm_cfg)
        self.squeeze_excite = (SqueezeExcite(width, setting.se_channels)
                               if setting.se_channels else None)
        self.project = TFConv(width, setting.out_channels, 1,
                              norm_cfg=norm_cfg)

    def _forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        out = self.expand(x) if self.expand is not None else x
        if self.depthwise is not None:
            out = self.depthwise(out)
        depthwise = out
        if self.squeeze_excite is not None:
            out = self.squeeze_excite(out)
        out = self.project(out)
        if self.residual:
            out = out + x
        return out, depthwise

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return checkpoint_forward(self, self._forward, x, self.with_cp)


@MODELS.register_module()
class MobileNetV3TF(FrozenStagesMixin, BaseModule):
    """MobileNetV3 Large / Small or EdgeTPU-MobileNet backbone of TensorFlow
    DeepLab.

    The layers are data (:func:`deeplabplus_mm.archs.mobilenet_v3.
    layer_settings`): ``'large'`` and ``'small'`` are DeepLab's
    ``mobilenet_v3_{large,small}_seg`` (last block and final conv halved),
    ``'edgetpu'`` is ``mobilenet_edgetpu`` (fused kxk blocks first); output
    stride becomes stride 1 and an atrous rate on the depthwise convs in one
    loop, as ``mobilenet_base`` does.

    Features (indices for ``out_indices``; negative ones count from the
    end): ``0`` is the decoder's low-level feature, TF's
    ``layer_N/depthwise_output`` for ``low_level_stride`` (None: not
    computed, and feature 0 is None); ``1..N`` are the outputs of
    ``layer_1`` (``Conv``) .. ``layer_N`` (the final 1x1 ``Conv_1``: 480 /
    288 / 1280 channels at depth multiplier 1, the DeepLab head's input).

    Args:
        arch (str): ``'large'``, ``'small'`` or ``'edgetpu'``.
        depth_multiplier (float): TF's ``depth_multiplier``.
        output_stride (int): 8, 16 or 32.
        low_level_stride (int, optional): 4, 8 or 16 (TF's
            ``decoder_output_stride``; Large and Small only).
        out_indices (Sequence[int]): Features to return. Default: (-1, ).
        frozen_stages (int): Freeze the first ``frozen_stages`` layers
            (1 = the stem ``Conv``); -1 freezes nothing.
        norm_cfg (dict): Norm layer config. Default: BN with TF's epsilon
            1e-3 and momentum 1 - 0.997 (``mobilenet_v2_arg_scope``).
        norm_eval (bool): Keep norm layers in eval mode while training.
        with_cp (bool): Gradient checkpointing of every block.
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 arch: str = 'large',
                 depth_multiplier: float = 1.0,
                 output_stride: int = 32,
                 low_level_stride: Optional[int] = None,
                 out_indices: Sequence[int] = (-1, ),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(
                     type='BN', eps=1e-3, momentum=3e-3, requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(default_init_cfg(init_cfg))
        settings = v3_arch.layer_settings(
            arch, depth_multiplier, output_stride)
        end_points = v3_arch.ARCHS[arch][2]
        if low_level_stride is not None and \
                low_level_stride not in end_points:
            raise ValueError(f'low_level_stride of {arch!r} must be one of '
                             f'{sorted(end_points) or "none"} or None, got '
                             f'{low_level_stride!r}')
        self.out_indices = feature_indices(out_indices, len(settings) + 1)
        if 0 in self.out_indices and low_level_stride is None:
            raise ValueError('feature 0 (the low-level feature) needs a '
                             'low_level_stride')
        self._set_freezing(frozen_stages, len(settings), norm_eval)

        self.layer_names: List[str] = []  # module names, layer order
        for setting in settings:
            name = setting.scope
            if setting.is_block:
                module = ExpandedConvV3(setting, norm_cfg, with_cp)
            else:
                name = name.lower()
                module = TFConv(setting.in_channels, setting.out_channels,
                                setting.kernel, setting.stride,
                                activation=setting.act, norm_cfg=norm_cfg)
            self.add_module(name, module)
            self.layer_names.append(name)
        self.low_level_layer = None
        if low_level_stride is not None:
            self.low_level_layer = [s.end_point for s in settings].index(
                end_points[low_level_stride])
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Optional[Tensor], ...]:
        features = [None]
        for i, name in enumerate(self.layer_names):
            module = getattr(self, name)
            if isinstance(module, ExpandedConvV3):
                x, depthwise = module(x)
                if i == self.low_level_layer:
                    features[0] = depthwise
            else:
                x = module(x)
            features.append(x)
        return tuple(features[i] for i in self.out_indices)

    def frozen_modules(self) -> List[nn.Module]:
        return [getattr(self, name)
                for name in self.layer_names[:max(self.frozen_stages, 0)]]
