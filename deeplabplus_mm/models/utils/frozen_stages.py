"""``frozen_stages`` and ``norm_eval`` as mmseg's backbones have them
(``mmseg/models/backbones/resnet.py``, ``mobilenet_v2.py``), written once.

A backbone lists what ``frozen_stages`` freezes (:meth:`frozen_modules`);
the mixin keeps those modules in eval mode with ``requires_grad=False``
and, with ``norm_eval``, every BatchNorm in eval mode, whatever
``train()`` is called with.
"""
from typing import List

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


class FrozenStagesMixin:
    """``train()`` that keeps frozen stages frozen and, with ``norm_eval``,
    the norms in eval mode. Put it before ``BaseModule`` in the bases; the
    class sets ``frozen_stages`` and ``norm_eval`` and calls
    :meth:`_freeze_stages` at the end of ``__init__``."""

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
