"""Architectures as data, in pure Python (no torch, no OpenMMLab imports):
the single home of every backbone's schedule and every head's layout.

The models build their layers from these descriptions, and the TF checkpoint
converter computes from the very same data which parameters (names and
shapes) a config's model holds, without building it:

* :mod:`.xception`: aligned Xception-41/65/71 blocks, and every unit's
  stride and rates for an output stride and multi-grid;
* :mod:`.mobilenet_v2`: MobileNetV2 as TF DeepLab builds it (channel
  rounding, stride and rate per layer);
* :mod:`.mobilenet_v3`: MobileNetV3 Large / Small and EdgeTPU-MobileNet
  as TF DeepLab's feature extractor builds them;
* :mod:`.resnet_v1_beta`: ResNet-v1-beta 50/101 (bottleneck units, the
  stride on each block's last unit, multi-grid);
* :mod:`.heads`: the ASPP, the Dense Prediction Cell and the decoder as
  lists of :class:`~.heads.HeadConv` layers;
* :mod:`.lraspp`: the MobileNetV3 segmentation head (LR-ASPP: gated 1x1
  branch, sum-merge decoder whose output is the logits);
* :mod:`.layers`: :class:`ConvSpec`, :func:`state_shapes` and TF's
  output-stride rule (:func:`~.layers.atrous_schedule`).

Adding a backbone (or a head) follows one pattern:

1. ``archs/<name>.py``: the TF tables as constants, a ``*_settings(...)``
   function giving one record per layer or unit with its channels and, by
   :func:`~.layers.atrous_schedule`, its stride and rate for an output
   stride (see :func:`.mobilenet_v2.layer_settings`,
   :func:`.xception.unit_settings`), and ``convs(**config_args)``: its
   :class:`ConvSpec` records in module order, read from those settings
   (a head: ``*_layers(...)`` of :class:`~.heads.HeadConv` and
   ``*_head_convs(**config_args)``);
2. the model in ``models/backbones/`` (with ``models/utils``'
   ``feature_indices``, ``FrozenStagesMixin``, ``checkpoint_forward``) or
   ``models/decode_heads/`` (on :class:`~deeplabplus_mm.models.
   decode_heads.TFDecodeHead`) builds its modules from the settings
   (layers) and holds no table of its own;
3. its ``convs`` in :data:`BACKBONE_CONVS` (:data:`HEAD_CONVS`) below,
   under the registered type name; ``tests/test_configs.py`` then checks
   every config's built ``state_dict`` against :func:`model_convs`;
4. its TF scope table in :mod:`deeplabplus_mm.converters.name_tables`.

:func:`model_convs` turns a config's ``model`` dict into :class:`ConvSpec`
records (one per convolution, with its module path) and
:func:`state_shapes` those into the ``state_dict`` keys and shapes.
"""
from typing import Callable, Dict, List, Mapping

from . import (fake_quant, heads, lraspp, mobilenet_v2, mobilenet_v3,
               resnet_v1_beta, xception)
from .layers import ConvSpec, state_shapes

# Registered model type -> its convolutions from the config's arguments.
BACKBONE_CONVS: Dict[str, Callable[..., List[ConvSpec]]] = {
    'AlignedXception': xception.convs,
    'MobileNetV2TF': mobilenet_v2.convs,
    'MobileNetV3TF': mobilenet_v3.convs,
    'ResNetV1BetaTF': resnet_v1_beta.convs,
}
HEAD_CONVS: Dict[str, Callable[..., List[ConvSpec]]] = {
    'DeepLabV3PlusTFHead': heads.aspp_head_convs,
    'DensePredictionCellHead': heads.dpc_head_convs,
    'LRASPPTFHead': lraspp.lraspp_head_convs,
}


def _call(table, cfg, what):
    cfg = dict(cfg)
    kind = cfg.pop('type', None)
    if kind not in table:
        raise ValueError(f'{what} type {kind!r} has no architecture '
                         f'description; known: {", ".join(sorted(table))}')
    return table[kind](**cfg)


def model_convs(model: Mapping, backbone_only: bool = False
                ) -> List[ConvSpec]:
    """The convolutions of a segmentor config's ``model`` dict, with their
    ``state_dict`` paths (``backbone.*``, ``decode_head.*``), or of its
    backbone alone (paths relative to the backbone).

    Raises:
        ValueError: a backbone or head type that is not described here, or
            a model with an auxiliary head (TF DeepLab has none).
    """
    backbone = _call(BACKBONE_CONVS, model['backbone'], 'backbone')
    if backbone_only:
        return backbone
    if model.get('auxiliary_head'):
        raise ValueError('models with an auxiliary_head have no TF '
                         'counterpart')
    head = _call(HEAD_CONVS, model['decode_head'], 'decode_head')
    return ([s.with_prefix('backbone.') for s in backbone] +
            [s.with_prefix('decode_head.') for s in head])


def model_state_shapes(model: Mapping) -> Dict[str, tuple]:
    """``state_dict`` key -> shape of a segmentor config's ``model``: its
    convolutions' parameters, and the fake-quantisation ranges of an 8-bit
    model (:mod:`.fake_quant`)."""
    convs = model_convs(model)
    shapes = state_shapes(convs)
    if fake_quant.is_quantized(model):
        shapes.update(fake_quant.quant_shapes(model, convs))
    return shapes


__all__ = ['BACKBONE_CONVS', 'ConvSpec', 'HEAD_CONVS', 'model_convs',
           'model_state_shapes', 'state_shapes']
