"""Where TF's ``contrib.quantize`` puts its ranges in an 8-bit model, as
``state_dict`` keys (pure Python, like the rest of :mod:`..archs`).

``create_training_graph`` / ``create_eval_graph`` (TF 1.x) fold each batch
norm into its conv and add, per conv, ``<scope>/weights_quant/{min,max}``
(the folded weights' range) and ``<scope>/act_quant/{min,max}`` (the range
of its activation's output, or of its linear output), and for a residual
sum not followed by an activation (MobileNetV2's inverted residuals)
``<block>/post_activation_bypass_quant/{min,max}``. Our
:class:`~deeplabplus_mm.models.segmentors.TFFakeQuantEncoderDecoder` holds
each pair as ``<module>.<kind>.min`` / ``.max`` (shape ``()``).
"""
from typing import Callable, Dict, Iterable, List

from . import mobilenet_v2
from .layers import ConvSpec

# Segmentor types whose models carry fake-quantisation ranges.
QUANTIZED_MODELS = ('TFFakeQuantEncoderDecoder', )
KINDS = ('weights_quant', 'act_quant', 'post_activation_bypass_quant')


def _mobilenet_v2_residuals(depth_multiplier: float = 1.0,
                            divisible_by=None, **unused) -> List[str]:
    return [layer.scope for layer in mobilenet_v2.layer_settings(
        depth_multiplier, 16, divisible_by) if layer.residual]


# Backbone type -> the module paths of its residual sums.
BACKBONE_RESIDUALS: Dict[str, Callable[..., List[str]]] = {
    'MobileNetV2TF': _mobilenet_v2_residuals,
}


def is_quantized(model: dict) -> bool:
    return model.get('type') in QUANTIZED_MODELS


def quant_shapes(model: dict, convs: Iterable[ConvSpec]) -> Dict[str, tuple]:
    """``state_dict`` key -> ``()`` of every range of a quantised
    segmentor ``model`` whose convolutions are ``convs`` (with their
    ``backbone.`` / ``decode_head.`` paths).

    Raises:
        ValueError: a backbone whose residual sums are not described here.
    """
    backbone = dict(model['backbone'])
    kind = backbone.pop('type', None)
    if kind not in BACKBONE_RESIDUALS:
        raise ValueError(f'no 8-bit (fake-quantised) description of backbone '
                         f'{kind!r}; known: {", ".join(BACKBONE_RESIDUALS)}')
    paths = []
    for spec in convs:
        if spec.norm or spec.bias:  # conv + BN, or the logits conv
            paths += [f'{spec.path}.weights_quant', f'{spec.path}.act_quant']
    paths += [f'backbone.{scope}.post_activation_bypass_quant'
              for scope in BACKBONE_RESIDUALS[kind](**backbone)]
    return {f'{p}.{end}': () for p in paths for end in ('min', 'max')}
