"""Training in channels_last memory format.

PyTorch runs a convolution channels_last when its input or its weight is
channels_last, and its output is then channels_last too, so a
channels_last image at the segmentor's entrance carries the whole network
(convs, BN, ReLU, resizes, concatenations) in that format.
:class:`ChannelsLastTrainingHook` does just that in training mode; the
weights keep their layout, so optimizer state, DDP gradient buckets and
checkpoints are those of a plain run.

The config key ``train_channels_last`` turns it on (set where it is faster:
see docs/benchmarks.md); ``--cfg-options train_channels_last=False`` turns it
off.
"""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .config_switch import config_switch

TRAIN_CHANNELS_LAST = 'train_channels_last'


def _inputs_channels_last(module, args, kwargs):
    """Forward pre-hook: a 4-D ``inputs`` tensor to channels_last, in
    training mode only."""
    if not module.training:
        return None
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        args = (args[0].contiguous(memory_format=torch.channels_last),
                ) + tuple(args[1:])
    inputs = kwargs.get('inputs')
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        kwargs = dict(kwargs, inputs=inputs.contiguous(
            memory_format=torch.channels_last))
    return args, kwargs


def train_channels_last(model: torch.nn.Module):
    """Make ``model`` (a segmentor) run channels_last in training mode;
    returns the hook handle (``.remove()`` undoes it)."""
    return model.register_forward_pre_hook(_inputs_channels_last,
                                           with_kwargs=True)


@HOOKS.register_module()
class ChannelsLastTrainingHook(Hook):
    """Train channels_last when the config sets ``train_channels_last``
    (:func:`train_channels_last`); a no-op otherwise."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._handle = None

    def before_train(self, runner) -> None:
        value = config_switch(getattr(runner, 'cfg', None),
                              TRAIN_CHANNELS_LAST, False)
        if not value or self._handle is not None:
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        self._handle = train_channels_last(model)
        runner.logger.info('ChannelsLastTrainingHook: training in '
                           'channels_last memory format')

    def after_train(self, runner) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
