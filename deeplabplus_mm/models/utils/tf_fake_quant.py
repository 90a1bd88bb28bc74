"""TF's 8-bit fake quantisation (``contrib.quantize``'s eval graph) on our
modules, for the model zoo's quantised checkpoints (``quantize.md``).

:func:`fake_quant` is TF's ``FakeQuantWithMinMaxVars`` (8 bits): the range
is nudged so that zero is exactly representable, then values are clamped
and rounded half up to the grid (``fake_quant_ops_functor.h``), in
float32 and in TF's order of operations (bit for bit).
:func:`add_tf_fake_quant` rewrites a built segmentor the way
``create_eval_graph`` rewrites TF's graph (:mod:`deeplabplus_mm.archs.
fake_quant` lists the same points as data):

* every ``ConvModule`` with BN: the BN folded into the conv
  (``w * gamma / sqrt(var + eps)``, bias ``beta - mean * that``), the
  folded weights fake-quantised (``weights_quant``, narrow range 1..255),
  then the activation (if any) and ``act_quant`` on the output;
* the logits conv (``conv_seg``): ``weights_quant`` on its weights,
  ``act_quant`` after the bias;
* MobileNetV2's residual sums: ``post_activation_bypass_quant``.

Inference only: TF's quantisation-aware training (BN corrections, EMA
range updates) is not reproduced.
"""
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor

from ..backbones.mobilenet_v2_tf import ExpandedConv
from .tf_padding import tf_same_pad


def nudged_range(min_value: float, max_value: float, narrow_range: bool,
                 num_bits: int = 8):
    """TF's ``Nudge``: ``(nudged_min, nudged_max, scale)`` as float32, with
    zero on the grid (the zero point rounded half away from zero)."""
    f32 = np.float32
    quant_min = f32(1 if narrow_range else 0)
    quant_max = f32(2**num_bits - 1)
    min_value, max_value = f32(min_value), f32(max_value)
    scale = f32((max_value - min_value) / (quant_max - quant_min))
    zero_point_from_min = f32(quant_min - min_value / scale)
    if zero_point_from_min < quant_min:
        zero_point = quant_min
    elif zero_point_from_min > quant_max:
        zero_point = quant_max
    else:  # std::round: half away from zero (the value is >= 0 here)
        zero_point = f32(np.floor(zero_point_from_min + f32(0.5)))
    return (f32((quant_min - zero_point) * scale),
            f32((quant_max - zero_point) * scale), scale)


def fake_quant(x: Tensor, min_value: float, max_value: float,
               narrow_range: bool = False) -> Tensor:
    """TF's ``fake_quant_with_min_max_vars(x, min, max, num_bits=8)`` in
    the float32 operations of TF 2.15's kernel:
    ``floor((clamp(x) - nudged_min) / scale - quant_zero + 0.5) * scale``
    with ``quant_zero = floor(-nudged_min / scale + 0.5)`` (another order,
    e.g. multiplying by ``1 / scale``, rounds some near-ties apart)."""
    nudged_min, nudged_max, scale = nudged_range(min_value, max_value,
                                                 narrow_range)
    quant_zero = float(np.floor(np.float32(-nudged_min / scale) +
                                np.float32(0.5)))
    shifted = x.clamp(float(nudged_min), float(nudged_max)) - float(nudged_min)
    return torch.floor(shifted / float(scale) - quant_zero + 0.5) * float(
        scale)


class TFFakeQuant(nn.Module):
    """One range of TF's rewrite: buffers ``min`` and ``max`` (TF's
    ``<scope>/<kind>/min|max``), filled by the converter."""

    def __init__(self, narrow_range: bool = False):
        super().__init__()
        self.narrow_range = narrow_range
        self.register_buffer('min', torch.tensor(-6.0))
        self.register_buffer('max', torch.tensor(6.0))

    def forward(self, x: Tensor) -> Tensor:
        return fake_quant(x, self.min.item(), self.max.item(),
                          self.narrow_range)

    def extra_repr(self) -> str:
        return f'narrow_range={self.narrow_range}'


def _eval_only(module):
    if module.training:
        raise NotImplementedError(
            'TF fake quantisation is implemented for inference only (TF\'s '
            'quantisation-aware training is not); train the float config '
            'and convert the quantised checkpoint for evaluation')


def _folded_conv_forward(self, x: Tensor, *args, **kwargs) -> Tensor:
    """A ``ConvModule`` (conv, BN, optional activation) as TF's folded,
    fake-quantised layer."""
    _eval_only(self)
    if getattr(self, 'tf_stride', 1) > 1:  # TFSameConv's 'SAME' padding
        x = tf_same_pad(x, self.tf_kernel_size, self.tf_stride)
    bn = self.bn
    multiplier = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * multiplier
    weight = self.weights_quant(self.conv.weight *
                                multiplier.view(-1, 1, 1, 1))
    out = self.conv._conv_forward(x, weight, None) + bias.view(1, -1, 1, 1)
    if self.with_activation:
        out = self.activate(out)
    return self.act_quant(out)


def _quantized_logits_forward(self, x: Tensor) -> Tensor:
    _eval_only(self)
    return self.act_quant(
        F.conv2d(x, self.weights_quant(self.weight), self.bias, self.stride,
                 self.padding, self.dilation, self.groups))


def _bypass_quant_hook(module, inputs, output):
    out, *rest = output
    return (module.post_activation_bypass_quant(out), *rest)


def add_tf_fake_quant(segmentor: nn.Module) -> nn.Module:
    """Give a built segmentor TF's fake-quantised inference (in place; see
    the module docstring). Returns ``segmentor``."""
    for module in list(segmentor.modules()):
        if isinstance(module, ConvModule) and module.with_norm:
            if module.order != ('conv', 'norm', 'act'):
                raise ValueError(f'cannot fold {module.order} ConvModules')
            module.weights_quant = TFFakeQuant(narrow_range=True)
            module.act_quant = TFFakeQuant()
            module.forward = types.MethodType(_folded_conv_forward, module)
        elif isinstance(module, ExpandedConv) and module.residual:
            module.post_activation_bypass_quant = TFFakeQuant()
            module.register_forward_hook(_bypass_quant_hook)
    conv_seg = segmentor.decode_head.conv_seg
    conv_seg.weights_quant = TFFakeQuant(narrow_range=True)
    conv_seg.act_quant = TFFakeQuant()
    conv_seg.forward = types.MethodType(_quantized_logits_forward, conv_seg)
    return segmentor
