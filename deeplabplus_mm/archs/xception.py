"""Aligned Xception-41/65/71 of TF DeepLab (``core/xception.py``) as data.

The blocks of each variant (:data:`ARCH_SETTINGS`) and, for an output
stride and multi-grid, every unit's stride and atrous rates
(:func:`unit_settings`). Read by
:class:`deeplabplus_mm.models.AlignedXception` and by the converter.
"""
from typing import List, NamedTuple, Sequence, Tuple

from .layers import ConvSpec, atrous_schedule, separable


class BlockSetting(NamedTuple):
    """One TF ``xception_block``: ``num_units`` identical xception modules."""
    scope: str  # TF scope, e.g. 'entry_flow/block1'
    depths: Tuple[int, int, int]  # output channels of the 3 separable convs
    num_units: int
    stride: int  # stride of every unit (applied on the 3rd conv + shortcut)
    skip: str  # 'conv' (1x1 conv + BN), 'sum' (identity) or 'none'
    act_in_sepconv: bool = False  # ReLU inside (True) or before (False)
    multi_grid: bool = False  # unit rates come from ``multi_grid``


def _entry(index, depth, stride):
    return BlockSetting(f'entry_flow/block{index}', (depth, ) * 3, 1, stride,
                        'conv')


def _arch(entry, middle_units):
    return entry + [
        BlockSetting('middle_flow/block1', (728, ) * 3, middle_units, 1,
                     'sum'),
        BlockSetting('exit_flow/block1', (728, 1024, 1024), 1, 2, 'conv'),
        BlockSetting('exit_flow/block2', (1536, 1536, 2048), 1, 1, 'none',
                     act_in_sepconv=True, multi_grid=True),
    ]


# xception.xception_41 / xception_65_factory / xception_71_factory.
ARCH_SETTINGS = {
    41: _arch([_entry(1, 128, 2), _entry(2, 256, 2), _entry(3, 728, 2)], 8),
    65: _arch([_entry(1, 128, 2), _entry(2, 256, 2), _entry(3, 728, 2)], 16),
    71: _arch([_entry(1, 128, 2), _entry(2, 256, 1), _entry(3, 256, 2),
               _entry(4, 728, 1), _entry(5, 728, 2)], 16),
}
# The block whose unit_1 'separable_conv2_pointwise' output (pre-ReLU, stride
# 4, 256 channels) feeds the decoder (feature_extractor.networks_to_feature_maps).
LOW_LEVEL_BLOCK = {41: 'entry_flow/block2', 65: 'entry_flow/block2',
                   71: 'entry_flow/block3'}
STEM = (('entry_flow/conv1_1', 3, 32, 2), ('entry_flow/conv1_2', 32, 64, 1))
OUT_CHANNELS = 2048


class UnitSetting(NamedTuple):
    """One ``xception_module`` as built for an output stride."""
    block: str  # TF scope of its block, e.g. 'entry_flow/block1'
    name: str  # 'unit_1', 'unit_2', ...
    in_channels: int
    depths: Tuple[int, int, int]
    stride: int  # after the output-stride rule
    rate: int  # atrous rate of the unit (TF's ``rate``)
    unit_rates: Tuple[int, int, int]  # per depthwise conv, times ``rate``
    skip: str
    act_in_sepconv: bool

    @property
    def path(self) -> str:
        """Module path, e.g. 'entry_flow.block1.unit_1'."""
        return f'{self.block.replace("/", ".")}.{self.name}'


def unit_settings(arch: int = 65,
                  output_stride: int = 16,
                  multi_grid: Sequence[int] = (1, 1, 1)
                  ) -> List[UnitSetting]:
    """Every unit of Xception-``arch`` with its stride and rates.

    TF's ``stack_blocks_dense`` runs after the stride-2 stem, so the
    blocks' target is ``output_stride / 2``; ``multi_grid`` multiplies the
    rates of the three depthwise convs of the last block
    (``xception_block(unit_rate_list=multi_grid)``).

    Raises:
        ValueError: unknown ``arch``, ``output_stride`` not 8, 16 or 32,
            ``multi_grid`` not three positive rates.
    """
    if arch not in ARCH_SETTINGS:
        raise ValueError(f'arch must be one of {sorted(ARCH_SETTINGS)}, got '
                         f'{arch!r}')
    if output_stride not in (8, 16, 32):
        raise ValueError('output_stride must be 8, 16 or 32, got '
                         f'{output_stride!r}')
    if len(multi_grid) != 3 or any(int(r) < 1 for r in multi_grid):
        raise ValueError('multi_grid must hold 3 positive rates, got '
                         f'{multi_grid!r}')
    units = [(block, u) for block in ARCH_SETTINGS[arch]
             for u in range(block.num_units)]
    schedule = atrous_schedule([block.stride for block, _ in units],
                               output_stride // 2)
    settings, channels = [], STEM[-1][2]
    for (block, u), (stride, rate) in zip(units, schedule):
        grid = multi_grid if block.multi_grid else (1, 1, 1)
        settings.append(
            UnitSetting(block.scope, f'unit_{u + 1}', channels,
                        block.depths, stride, rate,
                        tuple(int(r) for r in grid), block.skip,
                        block.act_in_sepconv))
        channels = block.depths[-1]
    return settings


def convs(arch: int = 65, **unused) -> List[ConvSpec]:
    """The convolutions of ``AlignedXception(arch)``, in module order.

    Output stride and multi-grid change strides and rates only, never a
    parameter, so they are not arguments here.
    """
    specs = [ConvSpec(scope.replace('/', '.'), cin, cout, 3)
             for scope, cin, cout, _ in STEM]
    for unit in unit_settings(arch):
        channels = unit.in_channels
        for i, depth in enumerate(unit.depths):
            specs += separable(f'{unit.path}.separable_conv{i + 1}',
                               channels, depth)
            channels = depth
        if unit.skip == 'conv':
            specs.append(ConvSpec(f'{unit.path}.shortcut', unit.in_channels,
                                  channels, 1))
    return specs
