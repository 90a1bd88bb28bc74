"""Aligned Xception (Xception-41/65/71) exactly as TensorFlow DeepLab builds it.

Reference: ``research/deeplab/core/xception.py`` of tensorflow/models, and the
numerical rules collected in ``shared/tf_deeplab/README.md``. The module tree
mirrors TensorFlow's variable scopes, so that a TF variable name maps to a
PyTorch parameter name by a handful of renames (the table in
:mod:`deeplabplus_mm.converters.name_tables`)::

    xception_65/entry_flow/conv1_1/weights
        -> entry_flow.conv1_1.conv.weight
    xception_65/middle_flow/block1/unit_3/xception_module/separable_conv2_depthwise/BatchNorm/gamma
        -> middle_flow.block1.unit_3.separable_conv2.depthwise_conv.bn.weight
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import (ConvModule, DepthwiseSeparableConvModule,
                      build_activation_layer)
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor

# The architecture as data, shared with the TF checkpoint converter.
from ...archs.xception import ARCH_SETTINGS, LOW_LEVEL_BLOCK
from ..utils import FrozenStagesMixin, checkpoint_forward


def _out_of_place(act: nn.Module) -> nn.Module:
    """``act`` with in-place operation turned off (where it has it)."""
    if getattr(act, 'inplace', False):
        act.inplace = False
    return act


class XceptionModule(BaseModule):
    """TF ``xception_module``: three separable 3x3 convs plus a skip.

    With ``act_in_sepconv=False`` the activation (``act_cfg``, TF's ReLU by
    default) is applied to the *input* of each separable conv (out of place:
    the skip must see the pre-activation input) and none inside; with
    ``True`` each separable conv is dw-BN-act-pw-BN-act.
    The stride sits on the 3rd depthwise conv and on the 1x1 shortcut; the
    depthwise convs use ``rate * unit_rates[i]``. Every 3x3 conv pads
    symmetrically by its dilation, which equals both TF's explicit
    ``fixed_padding`` (stride 2) and 'SAME' (stride 1).

    ``forward`` returns ``(output, separable_conv2_output)``; the latter is the
    decoder's low-level end point in one block of the network.
    """

    def __init__(self, in_channels, depths, stride, rate, unit_rates, skip,
                 act_in_sepconv, norm_cfg, with_cp=False,
                 act_cfg=dict(type='ReLU'), init_cfg=None):
        super().__init__(init_cfg)
        if skip not in ('conv', 'sum', 'none'):
            raise ValueError(f'unknown skip type {skip!r}')
        if skip == 'sum' and (stride != 1 or in_channels != depths[-1]):
            raise ValueError('an identity skip needs stride 1 and equal '
                             'input/output channels')
        self.skip = skip
        self.act_in_sepconv = act_in_sepconv
        self.with_cp = with_cp
        if not act_in_sepconv:
            # One activation per separable conv (parametric ones such as
            # PReLU get their own weights), never in place.
            self.pre_acts = nn.ModuleList(
                _out_of_place(build_activation_layer(act_cfg))
                for _ in depths)
        channels = in_channels
        for i, depth in enumerate(depths):
            dilation = rate * unit_rates[i]
            self.add_module(
                f'separable_conv{i + 1}',
                DepthwiseSeparableConvModule(
                    channels,
                    depth,
                    3,
                    stride=stride if i == 2 else 1,
                    padding=dilation,
                    dilation=dilation,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg if act_in_sepconv else None))
            channels = depth
        if skip == 'conv':
            self.shortcut = ConvModule(
                in_channels,
                depths[-1],
                1,
                stride=stride,
                bias=False,
                norm_cfg=norm_cfg,
                act_cfg=None)

    def _forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        out = x
        for i in range(3):
            if not self.act_in_sepconv:
                out = self.pre_acts[i](out)  # ``x`` is the skip input
            out = getattr(self, f'separable_conv{i + 1}')(out)
            if i == 1:
                low_level = out
        if self.skip == 'conv':
            out = out + self.shortcut(x)
        elif self.skip == 'sum':
            out = out + x
        return out, low_level

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return checkpoint_forward(self, self._forward, x, self.with_cp)


@MODELS.register_module()
class AlignedXception(FrozenStagesMixin, BaseModule):
    """Aligned Xception backbone of TensorFlow DeepLab (v3+).

    The architecture is data (:data:`ARCH_SETTINGS`); output stride becomes
    stride and atrous rate of every unit in one loop, as TF's
    ``stack_blocks_dense`` does: once the running stride reaches the target
    (``output_stride / 2`` after the stride-2 stem), units run with stride 1
    at the current rate, and the rate is multiplied by the unit's nominal
    stride afterwards.

    Features (indices for ``out_indices``; negative indices count from the
    end): ``0`` is the decoder's low-level feature (the pre-ReLU BN output of
    ``separable_conv2`` in unit 1 of entry block 2, block 3 for Xception-71;
    stride 4, 256 channels); ``1..n`` are the outputs of the n blocks in
    order (entry blocks, middle flow, exit block 1, exit block 2 = the final
    2048-channel feature).

    Args:
        arch (int): 41, 65 or 71.
        output_stride (int): 8, 16 or 32 (32 = the ImageNet classifier).
        multi_grid (Sequence[int]): Unit rates of the three depthwise convs in
            exit block 2 (TF ``multi_grid``). Default: (1, 1, 1).
        out_indices (Sequence[int]): Features to return. Default: (0, -1),
            the two inputs of the DeepLab v3+ head.
        frozen_stages (int): Freeze the stem (0) and the first
            ``frozen_stages`` blocks; -1 freezes nothing.
        norm_cfg (dict): Norm layer config. Default: BN with TF's epsilon
            1e-3 and momentum 1 - 0.9997.
        act_cfg (dict): Activation (mmcv ``build_activation_layer`` config)
            of the stem convs and of every separable conv. Default: ReLU,
            as TF builds it; the default's module and parameter names are
            those of the TF checkpoint converter.
        norm_eval (bool): Keep norm layers in eval mode while training.
        with_cp (bool): Gradient checkpointing of every unit.
        init_cfg (dict | list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint='xception65_imagenet.pth')``
            for a backbone converted by ``tools/convert_tf_checkpoint.py``.
    """

    arch_settings = ARCH_SETTINGS

    def __init__(self,
                 arch: int = 65,
                 output_stride: int = 16,
                 multi_grid: Sequence[int] = (1, 1, 1),
                 out_indices: Sequence[int] = (0, -1),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(
                     type='BN', eps=1e-3, momentum=3e-4, requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1, layer=['_BatchNorm'])
            ]
        super().__init__(init_cfg)
        if arch not in self.arch_settings:
            raise ValueError(f'arch must be one of {sorted(ARCH_SETTINGS)}, '
                             f'got {arch!r}')
        if output_stride not in (8, 16, 32):
            raise ValueError('output_stride must be 8, 16 or 32, got '
                             f'{output_stride!r}')
        if len(multi_grid) != 3 or any(int(r) < 1 for r in multi_grid):
            raise ValueError('multi_grid must hold 3 positive rates, got '
                             f'{multi_grid!r}')
        blocks = self.arch_settings[arch]
        num_features = len(blocks) + 1
        if not out_indices:
            raise ValueError('out_indices must not be empty')
        self.out_indices = []
        for index in out_indices:
            if not -num_features <= index < num_features:
                raise ValueError(f'out_indices {tuple(out_indices)} out of '
                                 f'range for {num_features} features')
            self.out_indices.append(index % num_features)
        if not -1 <= frozen_stages <= len(blocks):
            raise ValueError(f'frozen_stages must be in [-1, {len(blocks)}], '
                             f'got {frozen_stages}')
        self.arch = arch
        self.output_stride = output_stride
        self.multi_grid = tuple(int(r) for r in multi_grid)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        def stem_conv(in_channels, out_channels, stride):
            return ConvModule(in_channels, out_channels, 3, stride=stride,
                              padding=1, bias=False, norm_cfg=norm_cfg,
                              act_cfg=act_cfg)

        self.entry_flow = nn.ModuleDict(
            dict(conv1_1=stem_conv(3, 32, 2), conv1_2=stem_conv(32, 64, 1)))
        self.middle_flow = nn.ModuleDict()
        self.exit_flow = nn.ModuleDict()

        # stack_blocks_dense: the stem already has stride 2.
        target_stride, current_stride, rate = output_stride // 2, 1, 1
        in_channels = 64
        self.block_names: List[str] = []  # module paths, in forward order
        self.feature_channels = [256]  # low-level feature, then blocks
        self.feature_strides = [4]
        self.block_rates = []  # (stride, rate) actually used per block
        for block in blocks:
            flow, name = block.scope.split('/')
            units = nn.ModuleDict()
            for u in range(block.num_units):
                if current_stride == target_stride:
                    stride, unit_rate = 1, rate
                    rate *= block.stride
                else:
                    stride, unit_rate = block.stride, 1
                    current_stride *= block.stride
                units[f'unit_{u + 1}'] = XceptionModule(
                    in_channels, block.depths, stride, unit_rate,
                    self.multi_grid if block.multi_grid else (1, 1, 1),
                    block.skip, block.act_in_sepconv, norm_cfg, with_cp,
                    act_cfg)
                in_channels = block.depths[-1]
            getattr(self, flow)[name] = units
            self.block_names.append(f'{flow}.{name}')
            self.block_rates.append((stride, unit_rate))
            self.feature_channels.append(in_channels)
            self.feature_strides.append(2 * current_stride)
        if current_stride != target_stride:
            raise ValueError(f'output_stride {output_stride} cannot be '
                             'reached')
        self.low_level_block = self.block_names.index(
            LOW_LEVEL_BLOCK[arch].replace('/', '.'))
        self._freeze_stages()

    @property
    def blocks(self) -> List[nn.ModuleDict]:
        return [self.get_submodule(name) for name in self.block_names]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.entry_flow.conv1_1(x)
        x = self.entry_flow.conv1_2(x)
        features = [None]
        for i, block in enumerate(self.blocks):
            for u, unit in enumerate(block.values()):
                x, low_level = unit(x)
                if u == 0 and i == self.low_level_block:
                    features[0] = low_level
            features.append(x)
        return tuple(features[i] for i in self.out_indices)

    def frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.entry_flow.conv1_1, self.entry_flow.conv1_2
                ] + self.blocks[:self.frozen_stages]
