"""TF variable name <-> our ``state_dict`` key, through the tables of
:mod:`.name_tables`, and TF <-> torch tensor layouts.

A :class:`Namer` maps one checkpoint's (or one config's) names both ways;
:func:`map_scope`, :func:`map_name`, :func:`tf_variable_names` and
:func:`tf_variables` answer single questions with it.
"""
from typing import Dict, Optional, Tuple

import numpy as np

from ..archs import model_state_shapes
from . import name_tables as nt
from .detect import IGNORED_RE, CheckpointInfo, ConversionError, family_of


def _split_key(key: str) -> Tuple[str, str, str]:
    """``(module path, torch leaf, kind)`` of a ``state_dict`` key."""
    for kind in nt.QUANT_KINDS:  # an 8-bit model's <module>.<kind>.min|max
        for end in ('min', 'max'):
            if key.endswith(f'.{kind}.{end}'):
                return key[:-len(kind) - len(end) - 2], f'{kind}/{end}', \
                    'quant'
    for leaf in ('conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean',
                 'bn.running_var', 'bn.num_batches_tracked'):
        if key.endswith('.' + leaf):
            return key[:-len(leaf) - 1], leaf, 'norm'
    module, _, leaf = key.rpartition('.')
    return module, leaf, 'plain'


class Namer:
    """TF name <-> ``state_dict`` key through the tables, for one
    checkpoint (its family and TF root scope) and one head."""

    def __init__(self, info: CheckpointInfo, segmentor: bool,
                 model: Optional[dict] = None):
        """With ``model`` (a config's model dict), TF names follow its
        backbone family and variant and its head; else the checkpoint's."""
        if model is not None:
            backbone = dict(model['backbone'])
            self.family = next((f for f in nt.FAMILIES
                                if f.model_type == backbone.get('type')),
                               None)
            if self.family is None:
                raise ConversionError(
                    f'backbone type {backbone.get("type")!r} has no TF name '
                    'table; supported: ' +
                    ', '.join(f.model_type for f in nt.FAMILIES))
            self.root = self.family.root_of(backbone)
            head = (model.get('decode_head') or {}).get('type')
        else:
            self.family = nt.family_named(info.family)
            self.root = self.family.root_of(info.backbone)
            head = info.head
        self.head = nt.HEADS.get(head) if head else None
        self.segmentor = segmentor

    def tf_name(self, key: str) -> Optional[str]:
        """The TF variable of ``key`` (None for num_batches_tracked and
        modules no table knows)."""
        module, leaf, kind = _split_key(key)
        if leaf == 'bn.num_batches_tracked':
            return None
        if not self.segmentor:
            table, root, path = self.family.table, self.root, module
        elif module.startswith('backbone.'):
            table, root = self.family.table, self.root
            path = module[len('backbone.'):]
        elif module.startswith('decode_head.') and self.head is not None:
            table, root = self.head, ''
            path = module[len('decode_head.'):]
        else:
            return None
        found = table.to_tf(path)
        if found is None or (found[1] != kind and kind != 'quant'):
            return None
        scope = root + found[0]
        if kind == 'quant':  # <conv or block scope>/<kind>/min|max
            return f'{scope}/{leaf}'
        tf_leaf = nt.TORCH_LEAVES[kind].get(leaf)
        if tf_leaf == 'weights' and scope.endswith('depthwise'):
            tf_leaf = 'depthwise_weights'
        return None if tf_leaf is None else f'{scope}/{tf_leaf}'

    def key(self, tf_name: str) -> Optional[str]:
        """The ``state_dict`` key of a TF variable, or None."""
        scope, _, leaf = tf_name.rpartition('/')
        quant = nt.QUANT_RANGE.match(tf_name)
        if quant and quant['kind'] in nt.QUANT_KINDS:
            scope, leaf = quant['scope'], f'{quant["kind"]}.{quant["end"]}'
        if scope.endswith('/BatchNorm'):
            scope = scope[:-len('/BatchNorm')]
            leaf = 'BatchNorm/' + leaf
        match = self.family.root.match(scope + '/')
        if match and match.group(0) == self.root:
            table, prefix = self.family.table, 'backbone.'
            scope = scope[match.end():]
        elif self.head is not None:
            table, prefix = self.head, 'decode_head.'
        else:
            return None
        found = table.to_torch(scope)
        if found is None:
            return None
        path, kind = found
        prefix = prefix if self.segmentor else ''
        if quant:
            return f'{prefix}{path}.{leaf}'
        leaves = (nt.NORM_CONV_LEAVES
                  if kind == 'norm' else nt.PLAIN_CONV_LEAVES)
        if leaf not in leaves:
            return None
        return f'{prefix}{path}.{leaves[leaf]}'


def tf_shape(tf_name: str, torch_shape: tuple) -> tuple:
    """The TF shape of a variable whose torch shape is ``torch_shape``."""
    if tf_name.endswith('/depthwise_weights'):
        c, m, kh, kw = torch_shape
        return (kh, kw, c, m)
    if tf_name.endswith('/weights'):
        cout, cin, kh, kw = torch_shape
        return (kh, kw, cin, cout)
    return tuple(torch_shape)


def to_torch_layout(tf_name: str, value: np.ndarray) -> np.ndarray:
    """Conv ``[kh,kw,cin,cout]`` -> ``[cout,cin,kh,kw]``; depthwise
    ``[kh,kw,c,1]`` -> ``[c,1,kh,kw]``; others unchanged."""
    if tf_name.endswith('/depthwise_weights'):
        return value.transpose(2, 3, 0, 1)
    if tf_name.endswith('/weights'):
        return value.transpose(3, 2, 0, 1)
    return value


def map_scope(scope: str,
              head: str = 'DeepLabV3PlusTFHead',
              segmentor: bool = True) -> Optional[str]:
    """Our module path of a TF variable scope, or None if not ours.

    ``'xception_65/entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise'``
    -> ``'backbone.entry_flow.block2.unit_1.separable_conv2.pointwise_conv'``;
    ``'aspp0'`` -> ``'decode_head.aspp.0'``.
    """
    family = family_of(scope + '/')
    if family is not None:
        match = family.root.match(scope + '/')
        found = family.table.to_torch(scope[match.end():])
        prefix = 'backbone.' if segmentor else ''
    else:
        found = nt.HEADS[head].to_torch(scope) if segmentor else None
        prefix = 'decode_head.'
    return None if found is None else prefix + found[0]


def tf_variable_names(model: dict) -> Dict[str, Optional[str]]:
    """``state_dict`` key -> TF variable name (None for
    ``num_batches_tracked``) of a config's segmentor ``model`` (a dict),
    through the name tables; the model is not built."""
    namer = Namer(None, True, model)
    return {key: namer.tf_name(key) for key in model_state_shapes(model)}


def tf_variables(model: dict) -> Dict[str, tuple]:
    """TF variable name -> TF shape of a config's segmentor: the model
    variables a TF DeepLab checkpoint for it holds (no optimizer slots, no
    ``global_step``); the model is not built."""
    shapes = model_state_shapes(model)
    return {name: tf_shape(name, shapes[key])
            for key, name in tf_variable_names(model).items() if name}


def map_name(tf_name: str,
             info: CheckpointInfo,
             segmentor: bool = True) -> Optional[str]:
    """The ``state_dict`` key of a TF variable of a checkpoint described by
    ``info``, or None (optimizer slots, classifier, unknown scopes)."""
    if IGNORED_RE.search(tf_name):
        return None
    return Namer(info, segmentor).key(tf_name)
