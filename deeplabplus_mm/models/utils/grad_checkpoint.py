"""Gradient checkpointing for backbone units (``with_cp``) that leaves BN's
running statistics as a plain forward pass leaves them.

``torch.utils.checkpoint`` runs a unit's forward pass a second time during
backward to recompute its activations. A BN layer in training mode updates
its running mean/variance (and ``num_batches_tracked``) on every forward
call, so without care a checkpointed unit counts each batch twice.
:class:`KeepNormStats` undoes the updates of the recomputation, and
:func:`checkpoint_forward` is the one place a backbone unit calls::

    def forward(self, x):
        return checkpoint_forward(self, self._forward, x,
                                  with_cp=self.with_cp)
"""
import contextlib
from typing import Any, Callable, List

import torch.nn as nn
import torch.utils.checkpoint as cp
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm


class KeepNormStats:
    """Context manager that restores the buffers (running mean, variance,
    batch count) of every BN layer in ``module`` on exit.

    Used as the recomputation context of ``torch.utils.checkpoint``, so the
    second forward pass during backward leaves the statistics as the first
    one set them.

    Args:
        module: The checkpointed unit; its ``_BatchNorm`` layers are found
            once, at construction.
    """

    def __init__(self, module: nn.Module):
        self.norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
        self.saved: List[List[Tensor]] = []

    def __enter__(self) -> 'KeepNormStats':
        self.saved = [[b.clone() for b in m.buffers()] for m in self.norms]
        return self

    def __exit__(self, *exc) -> None:
        for m, saved in zip(self.norms, self.saved):
            for buf, value in zip(m.buffers(), saved):
                buf.copy_(value)


def checkpoint_forward(module: nn.Module, forward: Callable[[Tensor], Any],
                       x: Tensor, with_cp: bool = True) -> Any:
    """``forward(x)``, gradient-checkpointed when asked and useful.

    Checkpointing (non-reentrant) applies when ``with_cp`` is set and ``x``
    requires grad, as in mmcv/mmseg backbones; otherwise ``forward`` runs
    as is. The recomputation runs inside :class:`KeepNormStats`, so outputs,
    gradients and BN running statistics equal those of a plain forward.

    Args:
        module: The unit whose BN layers the recomputation must not update
            (usually the module ``forward`` belongs to).
        forward: The unit's forward body, e.g. ``self._forward``.
        x: The unit's input.
        with_cp: Whether the unit was built with gradient checkpointing.

    Returns:
        Whatever ``forward(x)`` returns (a tensor or a tuple of tensors).
    """
    if with_cp and x.requires_grad:
        return cp.checkpoint(
            forward,
            x,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(),
                                KeepNormStats(module)))
    return forward(x)
