"""Fold inference-mode BatchNorm into the preceding convolution.

``y = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` is the convolution
with weight ``W * s`` and bias ``(b - mean) * s + beta``, ``s = gamma /
sqrt(var + eps)`` per output channel. :func:`fuse_conv_bn` applies this to
every mmcv :class:`~mmcv.cnn.ConvModule` whose ``order`` puts the norm right
after the conv: every conv + BN of the aligned Xception and of our DeepLab
v3+ head (depthwise and pointwise halves of separable convs included), and
those of mmseg's heads. Inference with the fused model::

    model = fuse_conv_bn(model.eval())

(mmseg's ResNet backbones pair plain ``Conv2d``/BN children outside
ConvModules; ``mmcv.cnn.fuse_conv_bn`` handles those.)

Why not ``mmcv.cnn.fuse_conv_bn``: it pairs a ``Conv2d`` child with the
next ``_BatchNorm`` child *in registration order*, which is not the data
flow: a ConvModule built with ``order=('norm', 'conv', 'act')`` registers its
norm after its conv too, and mmcv would fold a pre-conv norm into the conv.
It also fuses models in training mode (silently replacing batch statistics
by running ones) and fails on ``affine=False`` norms. This function looks at
``ConvModule.order``, refuses training mode and handles both.
"""
from typing import List

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['fuse_conv_bn', 'fusable_conv_modules', 'prepare_for_inference']


def fusable_conv_modules(model: nn.Module) -> List[ConvModule]:
    """The ConvModules of ``model`` whose BN directly follows the conv."""
    found = []
    for module in model.modules():
        if not (isinstance(module, ConvModule) and module.with_norm):
            continue
        order = tuple(module.order)
        i = order.index('conv')
        if i + 1 >= len(order) or order[i + 1] != 'norm':
            continue  # a pre-norm (or act between): nothing to fold
        if not isinstance(module.norm, _BatchNorm):
            continue  # GN, LN, an already fused Identity...
        if type(module.conv) is not nn.Conv2d:
            continue  # a conv with its own forward (e.g. DCN, padding)
        found.append(module)
    return found


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """Fold ``bn`` (eval mode) into ``conv`` in place, adding a bias."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bn.weight is not None:
        scale = scale * bn.weight.double()
        shift = shift * bn.weight.double()
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    bias = shift
    if conv.bias is not None:
        bias = bias + conv.bias.double() * scale
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype),
                               requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias.to(dtype),
                             requires_grad=conv.weight.requires_grad)


def _fold_all(model: nn.Module) -> int:
    """:func:`fuse_conv_bn`'s work; returns how many norms it folded."""
    modules = fusable_conv_modules(model)
    if model.training or any(m.norm.training for m in modules):
        raise ValueError('fuse_conv_bn folds running statistics and is for '
                         'inference only: call model.eval() first')
    for module in modules:
        if module.norm.running_var is None:
            raise ValueError(f'{type(module.norm).__name__} without running '
                             'statistics cannot be folded into a conv')
    for module in modules:
        _fold(module.conv, module.norm)
        setattr(module, module.norm_name, nn.Identity())
        module.with_norm = False
        # mmcv's efficient_conv_bn_eval would call its fused path with the
        # Identity as a norm.
        module.efficient_conv_bn_eval_forward = None
    return len(modules)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BN that follows a conv in a ConvModule, in place.

    The BN becomes ``nn.Identity`` (so state-dict keys of the conv stay and
    the norm's keys disappear) and the ConvModule's ``with_norm`` is turned
    off; the conv gains a bias. Outputs of the returned model equal the
    unfused model's in eval mode up to float rounding. Norms of other
    modules (a plain ``Conv2d`` followed by a BN child, pre-norm
    ConvModules, norms without running statistics) are left as they are.

    Args:
        model: A model in eval mode (``model.eval()``).

    Returns:
        nn.Module: ``model`` itself, fused.

    Raises:
        ValueError: ``model`` or one of the norms to fold is in training
            mode, or a norm tracks no running statistics (it normalises with
            batch statistics even in eval mode, which no conv can express).
    """
    _fold_all(model)
    return model


def prepare_for_inference(model: nn.Module, fuse: bool = True,
                          channels_last: bool = False) -> int:
    """Put ``model`` in eval mode, fold its BNs (:func:`fuse_conv_bn`) and/or
    store its 4-D weights channels_last (PyTorch then runs the convs
    channels_last whatever the input's layout). The one place used by
    ``tools/test.py --fuse-conv-bn --channels-last`` (FastInferenceHook),
    :class:`~deeplabplus_mm.apis.Segmenter` and the model benchmark.

    Returns:
        int: How many norms were folded (0 without ``fuse``).
    """
    model.eval()
    folded = _fold_all(model) if fuse else 0
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return folded
