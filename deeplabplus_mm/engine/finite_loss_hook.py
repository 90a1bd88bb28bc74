"""Stop training at the first NaN or Inf loss.

A diverged run otherwise goes on for hours, logging ``nan`` and saving
checkpoints of NaN weights over the good ones. :class:`FiniteLossHook`
(in ``configs/_base_/default_runtime.py``'s ``custom_hooks``) checks every
loss term of every iteration right after the step, before any other hook
sees it: on a non-finite value it raises :class:`NonFiniteLossError`
naming the iteration and the term(s), so this iteration's checkpoint is
never written and the last one saved (named in the message) is kept. In a
distributed run the ranks compare their losses (one all-gather of a few
numbers per iteration), so every rank stops at the same iteration with the
same message, whichever rank's batch diverged.

The switch is the config key ``stop_on_nonfinite_loss`` (as
``fast_inference`` for the fast path)::

    stop_on_nonfinite_loss = False                  # in a config
    --cfg-options stop_on_nonfinite_loss=False      # on tools/train.py
"""
import math
import os.path as osp

import torch
from mmengine.dist import all_gather, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .config_switch import config_switch

STOP_ON_NONFINITE_LOSS = 'stop_on_nonfinite_loss'


class NonFiniteLossError(RuntimeError):
    """A loss term was NaN or Inf; the message says where."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` at the first iteration whose loss
    (or any logged ``*loss*`` term) is NaN or Inf on any rank; nothing
    when the config sets ``stop_on_nonfinite_loss = False``."""

    # Before CheckpointHook (VERY_LOW) and every other after_train_iter.
    priority = 'VERY_HIGH'

    def __init__(self):
        self._on = True

    def before_train(self, runner) -> None:
        self._on = config_switch(getattr(runner, 'cfg', None),
                                 STOP_ON_NONFINITE_LOSS, True)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not self._on or not outputs:
            return
        names = [k for k in outputs if 'loss' in k]
        if not names:
            return
        values = torch.tensor([float(outputs[k]) for k in names],
                              dtype=torch.float64)
        ranks = ([values] if get_world_size() == 1 else
                 [v.cpu() for v in all_gather(values)])
        bad = {}
        for rank, found in enumerate(ranks):
            for name, value in zip(names, found.tolist()):
                if not math.isfinite(value):
                    bad.setdefault(name, []).append((rank, value))
        if not bad:
            return
        # the terms first; the total only if no term explains it
        terms = [n for n in bad if n != 'loss'] or ['loss']
        where = '; '.join(
            f'{name} = ' + ', '.join(
                f'{value}' + (f' (rank {rank})' if len(ranks) > 1 else '')
                for rank, value in bad[name]) for name in terms)
        last = runner.message_hub.get_info('last_ckpt')
        kept = (f'the last checkpoint, {last}, is kept'
                if last and osp.isfile(last) else 'no checkpoint was saved')
        option = f'--cfg-options {STOP_ON_NONFINITE_LOSS}=False'
        message = (f'non-finite loss at iteration {runner.iter + 1}: {where}'
                   f'; training stopped before saving it, {kept} '
                   f'({option} trains on)')
        runner.logger.error(message)
        raise NonFiniteLossError(message)
