"""TF DeepLab's softmax cross-entropy with its hard-example mining."""
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS
from torch import Tensor


def tf_top_k_pixels(num_pixels: int, top_k_percent_pixels: float,
                    hard_example_mining_step: int, iteration: int) -> int:
    """How many pixels TF keeps (``add_softmax_cross_entropy_loss_for_each_
    scale``), in float32 as TF computes it: ``int(top_k * n)`` for
    ``hard_example_mining_step == 0``, else with ``ratio = min(1, step /
    hard_example_mining_step)`` ``int((ratio * top_k + (1 - ratio)) * n)``:
    the kept fraction falls linearly from 1 to ``top_k`` over the first
    ``hard_example_mining_step`` iterations."""
    f32 = np.float32
    n = f32(num_pixels)
    if hard_example_mining_step == 0:
        return int(f32(top_k_percent_pixels) * n)
    ratio = min(f32(1.0), f32(iteration) / f32(hard_example_mining_step))
    return int((ratio * f32(top_k_percent_pixels) + (f32(1.0) - ratio)) * n)


@MODELS.register_module()
class TFCrossEntropyLoss(CrossEntropyLoss):
    """mmseg's softmax ``CrossEntropyLoss(avg_non_ignore=True)`` with TF
    DeepLab's hard-example mining (``train.py``'s ``--top_k_percent_pixels``
    and ``--hard_example_mining_step``).

    Off (``top_k_percent_pixels=1.0``, TF's default) and without class
    weights it *is* mmseg's loss (``avg_non_ignore=True``: the sum over the
    non-ignored pixels divided by their number), the shipped configs' loss.
    With class weights (TF's ``loss_weight`` list) it divides by the number
    of non-ignored pixels, as TF does (mmseg 1.2.2 divides by the sum of
    their weights and fails on ignored labels there). On, it computes what
    TF's ``add_softmax_cross_entropy_loss_for_each_scale`` computes:

    - the per-pixel losses of the whole batch (all images together, as TF
      flattens its clone's batch), ignored pixels 0, each multiplied by its
      class weight (TF's ``loss_weight`` list) and by ``weight`` if the head
      passes one (a pixel sampler's);
    - ``k`` = :func:`tf_top_k_pixels` of *all* pixels of the batch (ignored
      ones included), the fraction ramping linearly from 1 to
      ``top_k_percent_pixels`` over ``hard_example_mining_step`` iterations
      (TF's ``global_step``: here the runner's iteration, 0 for the first
      one, read from mmengine's message hub, where the runner's
      ``RuntimeInfoHook`` puts it before each training iteration; 0 when no
      runner set it); the kept fraction ``k / n`` goes back to the message
      hub, so the training log shows it as ``top_k_fraction``;
    - the sum of the ``k`` largest losses divided by how many of them are
      non-zero (so ignored pixels never count), 0 when none is.

    Under data-parallel training each process mines its own batch, as each
    of TF's clones does.

    Args:
        top_k_percent_pixels: Fraction of pixels kept, in (0, 1]; 1 = off.
        hard_example_mining_step: Iterations over which the fraction falls
            from 1 to ``top_k_percent_pixels`` (0: from the start).
        class_weight, loss_weight, loss_name, reduction: As mmseg's
            ``CrossEntropyLoss``.
        use_sigmoid, use_mask, avg_non_ignore: Accepted so that ``type`` can
            be swapped in a config; must stay softmax with
            ``avg_non_ignore=True``.
    """

    def __init__(self,
                 top_k_percent_pixels: float = 1.0,
                 hard_example_mining_step: int = 0,
                 use_sigmoid: bool = False,
                 use_mask: bool = False,
                 reduction: str = 'mean',
                 class_weight=None,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce',
                 avg_non_ignore: bool = True) -> None:
        if use_sigmoid or use_mask or not avg_non_ignore:
            raise ValueError('TFCrossEntropyLoss is the softmax loss averaged '
                             'over non-ignored pixels: use_sigmoid=False, '
                             'use_mask=False, avg_non_ignore=True')
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ValueError('TFCrossEntropyLoss: top_k_percent_pixels must '
                             f'be in (0, 1], got {top_k_percent_pixels}')
        if hard_example_mining_step < 0:
            raise ValueError('TFCrossEntropyLoss: hard_example_mining_step '
                             f'must be >= 0, got {hard_example_mining_step}')
        super().__init__(
            reduction=reduction,
            class_weight=class_weight,
            loss_weight=loss_weight,
            loss_name=loss_name,
            avg_non_ignore=True)
        self.top_k_percent_pixels = top_k_percent_pixels
        self.hard_example_mining_step = int(hard_example_mining_step)

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor=None,
                reduction_override=None,
                ignore_index: int = -100,
                **kwargs) -> Tensor:
        reduction = reduction_override or self.reduction
        mining = self.top_k_percent_pixels < 1.0
        if (not mining and self.class_weight is None) or (
                reduction != 'mean' or avg_factor is not None):
            return super().forward(cls_score, label, weight, avg_factor,
                                   reduction_override, ignore_index, **kwargs)
        class_weight = (None if self.class_weight is None else
                        cls_score.new_tensor(self.class_weight))
        losses = F.cross_entropy(cls_score, label, weight=class_weight,
                                 reduction='none', ignore_index=ignore_index)
        if weight is not None:
            losses = losses * weight.float()
        losses = losses.flatten()
        if mining:
            hub = MessageHub.get_current_instance()
            k = tf_top_k_pixels(losses.numel(), self.top_k_percent_pixels,
                                self.hard_example_mining_step,
                                int(hub.get_info('iter', 0) or 0))
            # logged by the runner as `top_k_fraction` beside the loss
            hub.update_scalar('train/top_k_fraction',
                              k / max(losses.numel(), 1))
            losses = torch.topk(losses, k, sorted=True).values
            present = (losses != 0).sum()
        else:
            present = (label != ignore_index).sum()
        present = present.to(losses.dtype)
        # TF's _div_maybe_zero
        loss = (present > 0).to(losses.dtype) * (
            losses.sum() / present.clamp(min=1e-5))
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'top_k_percent_pixels={self.top_k_percent_pixels}, '
                f'hard_example_mining_step={self.hard_example_mining_step}')
