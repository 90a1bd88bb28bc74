"""Aligned Xception-41/65/71 of TF DeepLab (``core/xception.py``) as data.

Read by :class:`deeplabplus_mm.models.AlignedXception` and by the converter.
"""
from typing import List, NamedTuple, Tuple

from .layers import ConvSpec, separable


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


def convs(arch: int = 65, **unused) -> List[ConvSpec]:
    """The convolutions of ``AlignedXception(arch)``, in module order.

    Output stride and multi-grid change strides and rates only, never a
    parameter, so they are not arguments here.
    """
    if arch not in ARCH_SETTINGS:
        raise ValueError(f'arch must be one of {sorted(ARCH_SETTINGS)}, got '
                         f'{arch!r}')
    specs = [ConvSpec(scope.replace('/', '.'), cin, cout, 3)
             for scope, cin, cout, _ in STEM]
    channels = STEM[-1][2]
    for block in ARCH_SETTINGS[arch]:
        for u in range(block.num_units):
            unit = f'{block.scope.replace("/", ".")}.unit_{u + 1}'
            unit_in = channels
            for i, depth in enumerate(block.depths):
                specs += separable(f'{unit}.separable_conv{i + 1}', channels,
                                   depth)
                channels = depth
            if block.skip == 'conv':
                specs.append(
                    ConvSpec(f'{unit}.shortcut', unit_in, channels, 1))
    return specs
