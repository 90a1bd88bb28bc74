"""TF variable scopes <-> our module paths: one table per backbone family and
per head, as data.

A table is a list of ``(TF scope template, module path template[, kind])``
rules. ``{field}`` placeholders stand for a regex given with the table and
are copied verbatim from one side to the other, so every rule works in both
directions: TF name -> ``state_dict`` key when converting, key -> TF name to
say which TF variable a parameter expects. The leaf of a variable
(``weights``, ``depthwise_weights``, ``BatchNorm/gamma``...) maps by
:data:`NORM_CONV_LEAVES` for an mmcv ``ConvModule`` with BN (kind ``'norm'``,
the default) and by :data:`PLAIN_CONV_LEAVES` for a plain ``nn.Conv2d`` with
bias (kind ``'plain'``: mmseg's ``conv_seg``). Depthwise convs are the TF
scopes that end in ``depthwise``.

One module per job: :mod:`.scopes` (the machinery), :mod:`.backbones` (one
:class:`Family` per backbone family), :mod:`.heads` (one
:class:`ScopeTable` per head). Adding a backbone family = a :class:`Family`
in :mod:`.backbones` + its model and its :mod:`deeplabplus_mm.archs`
description; a head likewise with a :class:`ScopeTable` in :data:`HEADS`.
"""
from .backbones import (FAMILIES, MOBILENET_V2, MOBILENET_V2_MULTIPLIERS,
                        MOBILENET_V3, MOBILENET_V3_MULTIPLIERS, RESNET_V1_BETA,
                        UNSUPPORTED_FAMILIES, XCEPTION, family_named)
from .heads import (ASPP_HEAD, DPC_HEAD, HEAD_ROOTS, HEADS, LRASPP_HEAD,
                    QUANT_KINDS, QUANT_RANGE, SUM_MERGE_LOGITS)
from .scopes import (NORM_CONV_LEAVES, PLAIN_CONV_LEAVES, TORCH_LEAVES, Family,
                     ScopeTable)

__all__ = [
    'ASPP_HEAD', 'DPC_HEAD', 'FAMILIES', 'Family', 'HEADS', 'HEAD_ROOTS',
    'LRASPP_HEAD', 'MOBILENET_V2', 'MOBILENET_V2_MULTIPLIERS', 'MOBILENET_V3',
    'MOBILENET_V3_MULTIPLIERS', 'NORM_CONV_LEAVES', 'PLAIN_CONV_LEAVES',
    'QUANT_KINDS', 'QUANT_RANGE', 'RESNET_V1_BETA', 'SUM_MERGE_LOGITS',
    'ScopeTable', 'TORCH_LEAVES', 'UNSUPPORTED_FAMILIES', 'XCEPTION',
    'family_named'
]
