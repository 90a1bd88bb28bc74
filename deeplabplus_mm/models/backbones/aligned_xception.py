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
from ...archs import xception
from ..utils import (FrozenStagesMixin, checkpoint_forward, default_init_cfg,
                     feature_indices)


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

    The architecture is data: the blocks, and every unit's stride and
    atrous rates for an output stride and multi-grid, come from
    :func:`deeplabplus_mm.archs.xception.unit_settings` (TF's
    ``stack_blocks_dense`` rule), which the TF checkpoint converter reads
    too.

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
        super().__init__(default_init_cfg(init_cfg))
        units = xception.unit_settings(arch, output_stride, multi_grid)
        num_blocks = len(xception.ARCH_SETTINGS[arch])
        # feature 0: the decoder's low-level feature, then each block's
        self.out_indices = feature_indices(out_indices, num_blocks + 1)
        self.arch = arch
        self.output_stride = output_stride
        self._set_freezing(frozen_stages, num_blocks, norm_eval)

        def stem_conv(in_channels, out_channels, stride):
            return ConvModule(in_channels, out_channels, 3, stride=stride,
                              padding=1, bias=False, norm_cfg=norm_cfg,
                              act_cfg=act_cfg)

        self.entry_flow = nn.ModuleDict({
            scope.split('/')[1]: stem_conv(cin, cout, stride)
            for scope, cin, cout, stride in xception.STEM
        })
        self.middle_flow = nn.ModuleDict()
        self.exit_flow = nn.ModuleDict()
        self.block_names: List[str] = []  # module paths, in forward order
        for unit in units:
            flow, name = unit.block.split('/')
            blocks = getattr(self, flow)
            if name not in blocks:
                blocks[name] = nn.ModuleDict()
                self.block_names.append(f'{flow}.{name}')
            blocks[name][unit.name] = XceptionModule(
                unit.in_channels, unit.depths, unit.stride, unit.rate,
                unit.unit_rates, unit.skip, unit.act_in_sepconv, norm_cfg,
                with_cp, act_cfg)
        self.low_level_block = self.block_names.index(
            xception.LOW_LEVEL_BLOCK[arch].replace('/', '.'))
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
