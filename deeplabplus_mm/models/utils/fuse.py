"""Fold inference-mode BatchNorm into the preceding convolution.

``y = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` is the convolution
with weight ``W * s`` and bias ``(b - mean) * s + beta``, ``s = gamma /
sqrt(var + eps)`` per output channel. :func:`fuse_conv_bn` applies this to
every mmcv :class:`~mmcv.cnn.ConvModule` whose ``order`` puts the norm right
after the conv: every conv + BN of the aligned Xception and of our DeepLab
v3+ head (depthwise and pointwise halves of separable convs included), and
those of mmseg's heads; also the plain ``Conv2d`` / BN pairs of mmseg's
ResNet backbones (:func:`fold_sites`). Inference with the fused model::

    model = fuse_conv_bn(model.eval())

Why not ``mmcv.cnn.fuse_conv_bn``: it pairs a ``Conv2d`` child with the
next ``_BatchNorm`` child *in registration order*, which is not the data
flow: a ConvModule built with ``order=('norm', 'conv', 'act')`` registers its
norm after its conv too, and mmcv would fold a pre-conv norm into the conv.
It also fuses models in training mode (silently replacing batch statistics
by running ones) and fails on ``affine=False`` norms. This function looks at
``ConvModule.order``, refuses training mode and handles both.
"""
import copy
from typing import Callable, List, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    'fold_sites', 'fuse_conv_bn', 'fusable_conv_modules',
    'prepare_for_inference', 'prepared_copy'
]


def fusable_conv_modules(model: nn.Module) -> List[ConvModule]:
    """The ConvModules of ``model`` whose BN directly follows the conv."""
    found = []
    for module in model.modules():
        if not (isinstance(module, ConvModule) and module.with_norm):
            continue
        if hasattr(module, 'weights_quant'):
            continue  # TF's 8-bit fold and fake quantisation (tf_fake_quant)
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
def _fold(conv: nn.Conv2d, bn: _BatchNorm,
          memory_format=torch.contiguous_format) -> None:
    """Fold ``bn`` (eval mode) into ``conv``: new weight (in
    ``memory_format``) and bias tensors, the old ones left as they are.

    The per-channel scale and shift are computed in float64 and rounded
    once; the weight is one multiplication in its own dtype, written
    straight into its new tensor: no float64 copy of the weights, which
    would cost time and, after a data loader's workers have forked,
    copy-on-write pages."""
    dtype = conv.weight.dtype
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bn.weight is not None:
        scale = scale * bn.weight.double()
        shift = shift * bn.weight.double()
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    weight = torch.empty_like(conv.weight, memory_format=memory_format)
    torch.mul(conv.weight, scale.to(dtype).reshape(-1, 1, 1, 1), out=weight)
    grad = conv.weight.requires_grad
    conv.weight = nn.Parameter(weight, requires_grad=grad)
    conv.bias = nn.Parameter(shift.to(dtype), requires_grad=grad)


def _conv_module_site(module: ConvModule):
    def replace():
        setattr(module, module.norm_name, nn.Identity())
        module.with_norm = False
        # mmcv's efficient_conv_bn_eval would call its fused path with the
        # Identity as a norm.
        module.efficient_conv_bn_eval_forward = None
    return module.conv, module.norm, replace


def _is_pair(conv, norm) -> bool:
    return type(conv) is nn.Conv2d and isinstance(norm, _BatchNorm)


def fold_sites(model: nn.Module) -> List[Tuple[nn.Conv2d, _BatchNorm,
                                               Callable[[], None]]]:
    """Every conv directly followed by a BatchNorm in the data flow:
    ``(conv, norm, replace)``, where ``replace()`` puts an ``nn.Identity``
    in the norm's place.

    Three places where the data flow is known are searched: mmcv
    :class:`~mmcv.cnn.ConvModule` (by its ``order``; see
    :func:`fusable_conv_modules`), consecutive ``Conv2d`` / BN children of an
    ``nn.Sequential`` (ResNet stems and shortcut projections), and the
    ``conv{i}`` / ``norm{i}`` pairs of mmseg's ResNet blocks and of its
    non-deep stem (``forward`` applies ``norm{i}`` right after ``conv{i}``;
    plugins come after the norm). A conv whose class has its own
    ``forward`` (DCN, ...) is never folded.
    """
    from mmseg.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
    sites = [_conv_module_site(m) for m in fusable_conv_modules(model)]
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            for i in range(len(children) - 1):
                if _is_pair(children[i], children[i + 1]):
                    sites.append((children[i], children[i + 1],
                                  _sequential_replace(module, i + 1)))
        elif isinstance(module, (BasicBlock, Bottleneck, ResNet)):
            if isinstance(module, ResNet) and module.deep_stem:
                continue  # its stem is a Sequential, found above
            for i in (1, 2, 3):
                conv = getattr(module, f'conv{i}', None)
                name = getattr(module, f'norm{i}_name', None)
                norm = getattr(module, name, None) if name else None
                if _is_pair(conv, norm):
                    sites.append((conv, norm, _attr_replace(module, name)))
    return sites


def _sequential_replace(seq: nn.Sequential, index: int):
    def replace():
        seq[index] = nn.Identity()
    return replace


def _attr_replace(module: nn.Module, name: str):
    def replace():
        setattr(module, name, nn.Identity())
    return replace


def _fold_all(model: nn.Module,
              memory_format=torch.contiguous_format) -> int:
    """:func:`fuse_conv_bn`'s work (folded weights in ``memory_format``);
    returns how many norms it folded."""
    sites = fold_sites(model)
    if model.training or any(norm.training for _, norm, _ in sites):
        raise ValueError('fuse_conv_bn folds running statistics and is for '
                         'inference only: call model.eval() first')
    for _, norm, _ in sites:
        if norm.running_var is None:
            raise ValueError(f'{type(norm).__name__} without running '
                             'statistics cannot be folded into a conv')
    seen = set()
    for conv, norm, replace in sites:
        if id(norm) in seen:
            continue
        seen.add(id(norm))
        _fold(conv, norm, memory_format)
        replace()
    return len(seen)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BN that directly follows a conv, in place.

    The convs and norms are those of :func:`fold_sites` (ConvModules by
    their ``order``, ``nn.Sequential`` conv/BN neighbours, mmseg's ResNet
    blocks). The BN becomes ``nn.Identity`` (so state-dict keys of the conv
    stay and the norm's keys disappear), a ConvModule's ``with_norm`` is
    turned off; the conv gains a bias. Outputs of the returned model equal
    the unfused model's in eval mode up to float rounding. Other norms
    (pre-norm ConvModules, a BN after something else) are left as they
    are.

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
    ``tools/test.py`` (FastInferenceHook, through :func:`prepared_copy`),
    :class:`~deeplabplus_mm.apis.Segmenter` and the model benchmark.

    Both steps put new tensors in the model's place and never write into
    the ones they replace (so :func:`prepared_copy` can share them).

    Returns:
        int: How many norms were folded (0 without ``fuse``).
    """
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    folded = _fold_all(model, fmt) if fuse else 0
    if channels_last:  # the weights not folded
        _store_channels_last(model)
    return folded


def prepared_copy(model: nn.Module, fuse: bool = True,
                  channels_last: bool = False) -> Tuple[nn.Module, int]:
    """:func:`prepare_for_inference` on a copy of ``model``, leaving
    ``model`` (its modules, parameters, buffers and their layouts)
    untouched.

    The copy has modules of its own but shares every parameter and buffer
    with ``model`` until the preparation replaces it (a folded conv's
    weight and bias, channels_last weights are new tensors); what it keeps
    (an unfolded norm's statistics, 1-D biases) is read, never written, by
    an eval-mode forward. Unlike ``copy.deepcopy`` it therefore costs no
    copy of the weights the preparation replaces anyway.

    Returns:
        tuple: ``(prepared copy, number of folded norms)``.
    """
    shared = {id(t): t for t in model.parameters()}
    shared.update((id(t), t) for t in model.buffers())
    twin = copy.deepcopy(model, memo=shared)
    return twin, prepare_for_inference(twin, fuse, channels_last)


@torch.no_grad()
def _store_channels_last(model: nn.Module) -> None:
    """``model.to(memory_format=torch.channels_last)``, except that every
    4-D parameter and buffer is replaced by a new tensor rather than
    rewritten in place (``Module.to`` sets ``param.data``, which would
    change a parameter shared with another model)."""
    fmt = torch.channels_last
    done = {}
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is None or param.dim() != 4:
                continue
            if id(param) not in done:
                done[id(param)] = nn.Parameter(
                    param.contiguous(memory_format=fmt),
                    requires_grad=param.requires_grad)
            module._parameters[name] = done[id(param)]
        for name, buf in module._buffers.items():
            if buf is not None and buf.dim() == 4:
                module._buffers[name] = buf.contiguous(memory_format=fmt)
