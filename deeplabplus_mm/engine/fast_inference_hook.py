"""Faster testing: fold BatchNorm into convs and use channels_last.

Measured by ``tools/benchmarks/model.py`` (docs/benchmarks.md): on 2 CPU
cores the eval forward of Xception-65 OS16 at 513x513 went from 0.97 to
0.69 s/image with both (folding alone: 0.91 s); OS8 and mmseg's R101-d8 gain
less (1.08x, 1.05x).
``tools/test.py --fuse-conv-bn --channels-last`` adds this hook; in a config::

    custom_hooks = [dict(type='FastInferenceHook', channels_last=True)]

It acts in ``before_test`` only (after the checkpoint is loaded, before the
first batch), so a training run's validation never sees a folded model.
"""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..models.utils import prepare_for_inference


@HOOKS.register_module()
class FastInferenceHook(Hook):
    """Fold BN into convs and/or switch the model's weights to
    channels_last before testing (:func:`prepare_for_inference`).

    Args:
        fuse_conv_bn: Fold every BN that follows a conv of a ConvModule.
        channels_last: Store 4-D weights channels_last (PyTorch then runs
            the convs channels_last whatever the input's layout).
    """

    priority = 'VERY_LOW'  # after every hook that could touch weights

    def __init__(self, fuse_conv_bn: bool = True,
                 channels_last: bool = False):
        self.fuse_conv_bn = fuse_conv_bn
        self.channels_last = channels_last

    def before_test(self, runner) -> None:
        folded = prepare_for_inference(runner.model, self.fuse_conv_bn,
                                       self.channels_last)
        done = []
        if self.fuse_conv_bn:
            done.append(f'folded {folded} BatchNorms into their convs')
        if self.channels_last:
            done.append('weights in channels_last')
        if done:
            runner.logger.info('FastInferenceHook: ' + ', '.join(done))
