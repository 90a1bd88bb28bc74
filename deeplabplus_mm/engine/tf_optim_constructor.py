"""TF DeepLab's per-variable training rules as optimizer parameter groups.

TF DeepLab (``research/deeplab/train.py``, ``utils/train_utils.py``) trains
with ``MomentumOptimizer`` on gradients that

* include ``weight_decay * w`` for the weights the slim arg scopes
  regularise: conv (and fully connected) weights; not depthwise weights
  (``regularize_depthwise=False``), BN parameters or biases;
* are multiplied by ``train_utils.get_model_gradient_multipliers``: 2 for
  every ``biases`` variable, ``last_layer_gradient_multiplier`` for the
  variables of the "last layers" (``logits``, ``image_pooling``, ``aspp``,
  ``concat_projection``, ``decoder``, ``meta_architecture``: everything
  after the backbone, our ``decode_head``), twice that for their biases.

A constant multiplier ``m`` applied to the gradient before the momentum
accumulator (``accum = momentum * accum + m * g; w -= lr * accum``) moves
the weights exactly as torch's SGD with learning rate ``m * lr`` (its
buffer then holds ``accum / m``), so each multiplier becomes a parameter
group's learning rate. mmengine's ``DefaultOptimWrapperConstructor`` cannot
state these rules: a ``custom_keys`` entry (for the head) switches its norm
and bias rules off for the parameters it matches.
"""
from typing import Dict, List, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS)
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
# TF's rule: a bias (``biases`` in the variable name) learns twice as fast.
BIAS_GRADIENT_MULTIPLIER = 2.0
# Key of each parameter group holding its TF gradient multiplier (its
# learning rate / the optimizer's): LoadMomentumHook divides TF's momentum
# accumulators by it.
MULTIPLIER_KEY = 'gradient_multiplier'


def is_depthwise(module: nn.Module) -> bool:
    """A conv with one filter per input channel (TF's depthwise conv)."""
    return (isinstance(module, _ConvNd) and module.groups > 1
            and module.groups == module.in_channels)


def tf_rule(name: str, module: nn.Module, leaf: str,
            last_layers: Sequence[str],
            last_layer_gradient_multiplier: float) -> Tuple[float, bool]:
    """``(gradient multiplier, decayed)`` of the parameter ``leaf`` of
    ``module`` (named ``name``, its module path) under TF's rules.

    Raises:
        ValueError: a parameter of a layer TF has no rule for.
    """
    last = any(name == p or name.startswith(p + '.') for p in last_layers)
    multiplier = last_layer_gradient_multiplier if last else 1.0
    if isinstance(module, NORM_TYPES):
        return multiplier, False
    if isinstance(module, (_ConvNd, nn.Linear)):
        if leaf == 'bias':
            return BIAS_GRADIENT_MULTIPLIER * multiplier, False
        if leaf == 'weight':
            return multiplier, not is_depthwise(module)
    raise ValueError(
        f'TFOptimWrapperConstructor: no TF training rule for parameter '
        f'{name + "." if name else ""}{leaf} of a {type(module).__name__} '
        '(known: conv, linear and norm layers)')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TFOptimWrapperConstructor:
    """Builds the optimizer with TF DeepLab's per-variable rules.

    Every parameter gets ``lr = optimizer lr * m`` and ``weight_decay =
    optimizer weight_decay`` if TF regularises it, else 0, where ``m`` is
    its TF gradient multiplier (module docstring); parameters that share
    both form one group, which also holds ``gradient_multiplier = m``. The
    first group has ``m = 1`` when there is one (the learning rate mmengine
    logs).

    Config::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='SGD', lr=0.007, momentum=0.9,
                           weight_decay=4e-5),
            constructor='TFOptimWrapperConstructor',
            paramwise_cfg=dict(last_layer_gradient_multiplier=1.0))

    ``paramwise_cfg`` keys (TF ``train.py`` flags):

    * ``last_layer_gradient_multiplier`` (float, default 1.0);
    * ``last_layers`` (module name prefixes, default ``('decode_head',
      'auxiliary_head')``); TF's ``last_layers_contain_logits_only``
      is ``('decode_head.conv_seg',)``.

    Raises:
        ValueError: unknown ``paramwise_cfg`` keys; parameters of layers
            without a TF rule (see :func:`tf_rule`).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        if 'optimizer' not in optim_wrapper_cfg:
            raise ValueError('optim_wrapper needs an optimizer')
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = dict(self.optim_wrapper_cfg.pop('optimizer'))
        paramwise_cfg = dict(paramwise_cfg or {})
        self.last_layer_gradient_multiplier = float(
            paramwise_cfg.pop('last_layer_gradient_multiplier', 1.0))
        self.last_layers = tuple(
            paramwise_cfg.pop('last_layers',
                              ('decode_head', 'auxiliary_head')))
        if paramwise_cfg:
            raise ValueError(
                'TFOptimWrapperConstructor: unknown paramwise_cfg keys '
                f'{sorted(paramwise_cfg)} (known: '
                'last_layer_gradient_multiplier, last_layers)')

    def param_groups(self, model: nn.Module) -> List[dict]:
        """The optimizer's parameter groups for ``model`` (see the class
        docstring); without ``lr``/``weight_decay`` when the optimizer
        config has none."""
        base_lr = self.optimizer_cfg.get('lr')
        base_wd = self.optimizer_cfg.get('weight_decay', 0.0)
        groups: Dict[Tuple[float, bool], dict] = {}
        seen = set()
        for name, module in model.named_modules():
            for leaf, param in module.named_parameters(recurse=False):
                if id(param) in seen:  # shared parameters: once
                    continue
                seen.add(id(param))
                rule = tf_rule(name, module, leaf, self.last_layers,
                               self.last_layer_gradient_multiplier)
                if rule not in groups:
                    multiplier, decayed = rule
                    group = {'params': [], MULTIPLIER_KEY: multiplier,
                             'weight_decay': base_wd if decayed else 0.0}
                    if base_lr is not None:
                        group['lr'] = base_lr * multiplier
                    groups[rule] = group
                groups[rule]['params'].append(param)
        # multiplier 1 first (mmengine logs the first group's lr), then
        # in order of appearance
        return sorted(groups.values(),
                      key=lambda g: g[MULTIPLIER_KEY] != 1.0)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        groups = self.param_groups(model)
        for g in groups:
            print_log(
                f'TFOptimWrapperConstructor: {len(g["params"])} parameters '
                f'with gradient multiplier {g[MULTIPLIER_KEY]:g} (lr '
                f'{g.get("lr", "default")}), weight decay '
                f'{g["weight_decay"]:g}', logger='current')
        optimizer = OPTIMIZERS.build(dict(self.optimizer_cfg, params=groups))
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper_cfg,
                                    default_args=dict(optimizer=optimizer))
