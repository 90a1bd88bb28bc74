"""Continue TF's momentum when fine-tuning from a converted TF checkpoint.

TF DeepLab's ``train_utils.get_model_init_fn`` restores every variable of
the initial checkpoint, the optimizer's ``<var>/Momentum`` slots included
(the model zoo's training tarballs hold them), so a TF fine-tuning run
continues the momentum of the run that wrote the checkpoint; only the step
counter starts again at 0. mmengine's ``load_from`` restores the model's
``state_dict`` alone.

``tools/convert_tf_checkpoint.py --momentum`` stores the slots in the
``.pth`` (key ``tf_momentum``: ``state_dict`` key -> TF's accumulator, in
torch's layout); with the config switch ``load_momentum = True``,
:class:`LoadMomentumHook` puts them into the optimizer before the first
iteration. TF multiplies gradients before they reach the accumulator, we
fold the multiplier ``m`` into a group's learning rate
(:class:`~deeplabplus_mm.engine.TFOptimWrapperConstructor`), so torch's
buffer is TF's accumulator / ``m``.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import _load_checkpoint

from .config_switch import config_switch
from .tf_optim_constructor import MULTIPLIER_KEY

LOAD_MOMENTUM = 'load_momentum'
CHECKPOINT_KEY = 'tf_momentum'


def load_momentum(optimizer, model, momentum: dict, source: str) -> int:
    """Set the SGD momentum buffers of ``model``'s parameters from TF
    accumulators (``state_dict`` key -> tensor); returns how many.

    Raises:
        ValueError: the optimizer has no momentum, or a key or shape does
            not fit the model (naming ``source`` and the key).
    """
    if not optimizer.defaults.get('momentum'):
        raise ValueError(f'{source}: {LOAD_MOMENTUM} needs an optimizer '
                         f'with momentum, got {type(optimizer).__name__} '
                         'without')
    params = dict(model.named_parameters())
    unknown = sorted(set(momentum) - set(params))
    if unknown:
        raise ValueError(f'{source}: {len(unknown)} momentum entries fit no '
                         f'parameter of the model, e.g. {unknown[0]}')
    group_of = {id(p): g for g in optimizer.param_groups for p in g['params']}
    for key, accum in momentum.items():
        param = params[key]
        if tuple(accum.shape) != tuple(param.shape):
            raise ValueError(f'{source}: momentum of {key} has shape '
                             f'{tuple(accum.shape)}, the parameter '
                             f'{tuple(param.shape)}')
        if id(param) not in group_of:
            raise ValueError(f'{source}: parameter {key} is not optimized')
        multiplier = group_of[id(param)].get(MULTIPLIER_KEY, 1.0)
        optimizer.state[param]['momentum_buffer'] = (
            accum.to(param.device, param.dtype) / multiplier).contiguous()
    return len(momentum)


@HOOKS.register_module()
class LoadMomentumHook(Hook):
    """With ``load_momentum = True`` in the config, puts the ``tf_momentum``
    of the ``load_from`` checkpoint into the optimizer (:func:`load_momentum`)
    before training starts; nothing on ``--resume`` (the checkpoint's own
    optimizer state is restored then) or with the switch off."""

    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        cfg = getattr(runner, 'cfg', None)
        if not config_switch(cfg, LOAD_MOMENTUM, False):
            return
        source = cfg.get('load_from')
        if runner.iter > 0 or cfg.get('resume', False):
            runner.logger.info(f'{LOAD_MOMENTUM}: resumed run, the optimizer '
                               'state of the resumed checkpoint is kept')
            return
        if not source:
            raise ValueError(f'{LOAD_MOMENTUM} = True needs load_from (a '
                             'checkpoint converted with '
                             'tools/convert_tf_checkpoint.py --momentum)')
        checkpoint = _load_checkpoint(source, map_location='cpu')
        momentum = checkpoint.get(CHECKPOINT_KEY) \
            if isinstance(checkpoint, dict) else None
        if not momentum:
            raise ValueError(
                f'{source}: holds no {CHECKPOINT_KEY} (convert the TF '
                'checkpoint with tools/convert_tf_checkpoint.py --momentum)')
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        count = load_momentum(runner.optim_wrapper.optimizer, model,
                              momentum, source)
        total = sum(1 for p in model.parameters() if p.requires_grad)
        runner.logger.info(f'{LOAD_MOMENTUM}: TF momentum of {count} of '
                           f'{total} parameters from {source}')
