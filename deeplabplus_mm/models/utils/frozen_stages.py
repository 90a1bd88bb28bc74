"""``frozen_stages`` and ``norm_eval`` as mmseg's backbones have them
(``mmseg/models/backbones/resnet.py``, ``mobilenet_v2.py``), written once.

A backbone lists what ``frozen_stages`` freezes (:meth:`frozen_modules`);
the mixin keeps those modules in eval mode with ``requires_grad=False``
and, with ``norm_eval``, every BatchNorm in eval mode, whatever
``train()`` is called with.
"""
from typing import List, Optional, Union

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


class FrozenStagesMixin:
    """``train()`` that keeps frozen stages frozen and, with ``norm_eval``,
    the norms in eval mode. Put it before ``BaseModule`` in the bases; the
    class calls :meth:`_set_freezing` in ``__init__`` and
    :meth:`_freeze_stages` at its end."""

    def _set_freezing(self, frozen_stages: int, num_stages: int,
                      norm_eval: bool) -> None:
        """Checks and keeps ``frozen_stages`` (-1: none, up to
        ``num_stages``) and ``norm_eval``."""
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    def frozen_modules(self) -> List[nn.Module]:
        """The modules ``frozen_stages`` freezes (none by default)."""
        return []

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        """Keep frozen stages and, with ``norm_eval``, all norms in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


def default_init_cfg(init_cfg: Optional[Union[dict, list]]
                     ) -> Union[dict, list]:
    """``init_cfg``, or mmseg's backbone default when None: Kaiming convs,
    BatchNorm weights 1."""
    if init_cfg is not None:
        return init_cfg
    return [dict(type='Kaiming', layer='Conv2d'),
            dict(type='Constant', val=1, layer=['_BatchNorm'])]
