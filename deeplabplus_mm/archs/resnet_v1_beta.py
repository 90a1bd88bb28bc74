"""ResNet-v1-beta 50/101 of TF DeepLab (``core/resnet_v1_beta.py``) as data.

``resnet_v1_{50,101}_beta``: the root is three 3x3 convs (``conv1_1`` /2,
``conv1_2``, ``conv1_3``; 64, 64, 128 channels) instead of one 7x7, then a
3x3/2 max pool (``pool1``, TF 'SAME'); four blocks of bottleneck units
(1x1 -> 3x3 -> 1x1, output 4 x the bottleneck depth) whose stride sits on
the **last** unit of blocks 1-3 (``resnet_v1_beta_block``); block 4 has one
unit per ``multi_grid`` entry, its 3x3 rates multiplied by them. Output
stride turns strides into rates as ``resnet_utils.stack_blocks_dense``
does (:func:`.layers.atrous_schedule`, the root's stride 4 counted first). Read by
:class:`deeplabplus_mm.models.ResNetV1BetaTF` and by the converter.
"""
from typing import List, NamedTuple, Optional, Sequence

from .layers import ConvSpec, atrous_schedule

# resnet_v1_{50,101}_beta: (scope, bottleneck depth, units, stride of the
# last unit) per block; block 4's units come from multi_grid.
BLOCKS = {
    50: (('block1', 64, 3, 2), ('block2', 128, 4, 2), ('block3', 256, 6, 2),
         ('block4', 512, None, 1)),
    101: (('block1', 64, 3, 2), ('block2', 128, 4, 2),
          ('block3', 256, 23, 2), ('block4', 512, None, 1)),
}
# root_block_fn_for_beta_variant: (scope, output channels, stride).
ROOT = (('conv1_1', 64, 2), ('conv1_2', 64, 1), ('conv1_3', 128, 1))
ROOT_STRIDE = 4  # conv1_1 /2 and pool1 /2
OUT_CHANNELS = 2048
# The zoo's flag for the resnet_v1_beta checkpoints (common.py).
DEFAULT_MULTI_GRID = (1, 2, 4)


def decoder_end_point(depth: int, low_level_stride: int) -> str:
    """``feature_extractor.networks_to_feature_maps``: the ``conv3`` (BN
    output, before the residual sum) of the unit before the strided one,
    e.g. ``block1/unit_2`` at stride 4 (256 channels)."""
    index = {4: 0, 8: 1, 16: 2}[low_level_stride]
    scope, _, units, _ = BLOCKS[depth][index]
    return f'{scope}/unit_{units - 1}'


class UnitSetting(NamedTuple):
    """One bottleneck unit as built for a given output stride."""
    scope: str  # 'block1/unit_1'
    in_channels: int
    bottleneck: int  # depth of conv1 / conv2
    out_channels: int  # depth of conv3 (4 x bottleneck)
    stride: int  # of conv2 and of the shortcut, after the OS rule
    rate: int  # atrous rate of conv2 (block rate x unit rate)

    @property
    def conv_shortcut(self) -> bool:
        """A 1x1 conv + BN shortcut; else identity, subsampled by stride
        (``resnet_utils.subsample``)."""
        return self.in_channels != self.out_channels


def unit_settings(depth: int = 50,
                  output_stride: Optional[int] = 16,
                  multi_grid: Sequence[int] = DEFAULT_MULTI_GRID
                  ) -> List[UnitSetting]:
    """The bottleneck units of ``resnet_v1_<depth>_beta``, in order.

    Args:
        depth: 50 or 101.
        output_stride: 8, 16 or 32 (None: nominal strides, OS 32).
        multi_grid: block 4's unit rates (one unit per entry).
    """
    if depth not in BLOCKS:
        raise ValueError(f'depth must be one of {sorted(BLOCKS)}, got '
                         f'{depth!r}')
    if output_stride is not None and output_stride not in (8, 16, 32):
        raise ValueError('output_stride must be 8, 16 or 32, got '
                         f'{output_stride!r}')
    if len(multi_grid) != 3:
        raise ValueError(f'multi_grid must have 3 rates, got {multi_grid!r}')
    # (scope, bottleneck depth, nominal stride, unit rate) per unit
    spec = []
    for scope, base, num_units, last_stride in BLOCKS[depth]:
        if num_units is None:  # block 4: stride 1, rates from multi_grid
            strides_rates = [(1, r) for r in multi_grid]
        else:
            strides_rates = [(1, 1)] * (num_units - 1) + [(last_stride, 1)]
        spec += [(f'{scope}/unit_{u + 1}', base, stride, unit_rate)
                 for u, (stride, unit_rate) in enumerate(strides_rates)]
    # resnet_v1_beta: the root's stride 4 comes first, stack_blocks_dense
    # gets output_stride / 4
    target = None if output_stride is None else output_stride // ROOT_STRIDE
    schedule = atrous_schedule([s[2] for s in spec], target)
    units, channels = [], ROOT[-1][1]
    for (scope, base, _, unit_rate), (stride, rate) in zip(spec, schedule):
        units.append(UnitSetting(scope, channels, base, 4 * base, stride,
                                 rate * unit_rate))
        channels = 4 * base
    return units


def convs(depth: int = 50, multi_grid: Sequence[int] = DEFAULT_MULTI_GRID,
          **unused) -> List[ConvSpec]:
    """The convolutions of ``ResNetV1BetaTF``, in module order (output
    stride and rates change no parameter; ``multi_grid`` sets the number of
    block 4 units)."""
    specs, channels = [], 3
    for scope, out, _ in ROOT:
        specs.append(ConvSpec(scope, channels, out, 3))
        channels = out
    for unit in unit_settings(depth, 16, multi_grid):
        path = unit.scope.replace('/', '.')
        if unit.conv_shortcut:
            specs.append(ConvSpec(f'{path}.shortcut', unit.in_channels,
                                  unit.out_channels, 1))
        specs += [
            ConvSpec(f'{path}.conv1', unit.in_channels, unit.bottleneck, 1),
            ConvSpec(f'{path}.conv2', unit.bottleneck, unit.bottleneck, 3),
            ConvSpec(f'{path}.conv3', unit.bottleneck, unit.out_channels, 1),
        ]
    return specs
