"""TF DeepLab's poly learning rate (``tf.train.polynomial_decay``)."""
from mmengine.optim.scheduler import PolyLR
from mmengine.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class TFPolyLR(PolyLR):
    """The learning rate of TF DeepLab's ``learning_policy='poly'``
    (``train_utils.get_model_learning_rate``).

    At iteration ``k`` (0-based, the step's ``global_step`` before its
    update)::

        lr = (base_lr - eta_min) * (1 - (k - begin) / (end - begin)) ** power
             + eta_min

    per parameter group (``base_lr``: the group's initial learning rate),
    so ``end`` is TF's ``training_number_of_steps`` and ``begin`` its
    ``slow_start_step`` (a warm-up scheduler covers the steps before it).
    With ``end`` = the config's ``max_iters`` the last iteration still
    trains with a small positive rate, as TF's.

    mmengine's ``PolyLR`` with the same ``end`` is not this sequence: it
    decays over ``end - begin - 1`` steps (its value is ``eta_min`` at
    iteration ``end - 1``), so over ``end = 10`` it gives
    ``0.007 * (8 / 9) ** 0.9`` at iteration 1 where TF gives
    ``0.007 * (9 / 10) ** 0.9``; and it chains from the group's current
    value. This scheduler computes TF's closed form from the initial value.

    Args:
        optimizer: Wrapped optimizer.
        eta_min: TF's ``end_learning_rate``. Defaults to 0.
        power: TF's ``learning_power``. Defaults to 1.
        begin: First iteration of the decay. Defaults to 0.
        end: TF's ``training_number_of_steps`` (required).
        **kwargs: mmengine's ``PolyLR`` arguments (``last_step``,
            ``by_epoch``, ``verbose``).
    """

    def __init__(self, optimizer, eta_min: float = 0., power: float = 1.,
                 begin: int = 0, end: int = None, **kwargs):
        if end is None:
            raise ValueError('TFPolyLR needs end (TF\'s '
                             'training_number_of_steps)')
        super().__init__(optimizer, eta_min=eta_min, power=power,
                         begin=begin, end=end, **kwargs)

    def _get_value(self):
        # mmengine counts last_step from begin (0 at iteration begin)
        decay_steps = self.end - self.begin
        step = min(self.last_step, decay_steps)
        factor = (1 - step / decay_steps)**self.power
        return [(base - self.eta_min) * factor + self.eta_min
                for base in self.base_values]
