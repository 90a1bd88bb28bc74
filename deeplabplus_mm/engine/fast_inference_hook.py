"""The fast path for validation, testing and TTA, on by default.

Folding BN into the convs and storing the weights channels_last (both in
:func:`~deeplabplus_mm.models.utils.prepare_for_inference`) predicts what the
plain model predicts, faster (docs/benchmarks.md, sections 1 and 8).

``configs/_base_/default_runtime.py`` lists this hook in ``custom_hooks``, so
every runner built from our configs takes the fast path: our
``tools/test.py`` (with or without ``--tta``), ``tools/dist_test.sh``,
mmseg's own ``tools/test.py`` and the validation during training. The one
switch that turns it off is the config key ``fast_inference``::

    fast_inference = False                      # in a config
    --cfg-options fast_inference=False          # any tool that takes it
    python tools/test.py CONFIG CKPT --no-fast  # the same, shorter

The hook never touches the runner's model: when the first batch of a
validation or test epoch arrives (after every ``before_*_epoch`` hook, so
an EMA hook has swapped its weights in), it copies the model (a wrapper's
``module``; for TTA the whole TTA model, the segmentor inside it included:
:func:`~deeplabplus_mm.models.utils.prepared_copy`, new modules and new
folded / channels_last weights, the rest shared read-only), prepares the
copy and lets the loop run on it; at the end of the epoch, before any other
hook's ``after_*_epoch`` (a best-checkpoint save included), the runner's
model is put back. Training therefore keeps its unfused BN, and the
weights, BN buffers and checkpoints of a run are those of a run without the
hook. The copy holds one more set of weights while it lives.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..models.utils import prepared_copy
from .config_switch import config_switch

FAST_INFERENCE = 'fast_inference'


def fast_inference_enabled(cfg) -> bool:
    """The config's ``fast_inference`` switch (on unless set false): what
    this hook, :class:`~deeplabplus_mm.apis.Segmenter` and ``tools/test.py``
    follow."""
    return config_switch(cfg, FAST_INFERENCE, True)


@HOOKS.register_module()
class FastInferenceHook(Hook):
    """Run validation and test epochs on a prepared copy of the model: BN
    folded into the convs and/or weights channels_last.

    Does nothing when the config sets ``fast_inference = False``.

    Args:
        fuse_conv_bn: Fold every BN that directly follows a conv
            (:func:`~deeplabplus_mm.models.utils.fuse_conv_bn`).
        channels_last: Store 4-D weights channels_last (PyTorch then runs
            the convs channels_last whatever the input's layout).
    """

    # after_*_epoch must put the runner's model back before any other hook
    # (CheckpointHook's save_best) sees it; the copy itself is made in
    # before_*_iter of the first batch, after every before_*_epoch hook.
    priority = 'VERY_HIGH'

    def __init__(self, fuse_conv_bn: bool = True,
                 channels_last: bool = True):
        self.fuse_conv_bn = fuse_conv_bn
        self.channels_last = channels_last
        self._saved = None

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        if batch_idx == 0:
            self._swap_in(runner, 'validation')

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        if batch_idx == 0:
            self._swap_in(runner, 'test')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._restore(runner)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._restore(runner)

    def _swap_in(self, runner, what: str) -> None:
        if self._saved is not None:  # an epoch that ended without after_*
            self._restore(runner)
        if not (self.fuse_conv_bn or self.channels_last):
            return
        if not fast_inference_enabled(getattr(runner, 'cfg', None)):
            runner.logger.info(f'FastInferenceHook: off ({FAST_INFERENCE}=False): '
                               f'{what} with the plain model')
            return
        model = runner.model
        if is_model_wrapper(model):
            if not isinstance(model, (DistributedDataParallel, DataParallel)):
                runner.logger.warning(
                    f'FastInferenceHook: {type(model).__name__} may shard '
                    f'the model; {what} with the plain model')
                return
            model = model.module
        fast, folded = prepared_copy(model, self.fuse_conv_bn,
                                     self.channels_last)
        self._saved = runner.model
        runner.model = fast
        done = []
        if self.fuse_conv_bn:
            done.append(f'folded {folded} BatchNorms into their convs')
        if self.channels_last:
            done.append('weights in channels_last')
        runner.logger.info(f'FastInferenceHook: {what} on a copy of the '
                           'model: ' + ', '.join(done))

    def _restore(self, runner) -> None:
        if self._saved is not None:
            runner.model = self._saved
            self._saved = None
