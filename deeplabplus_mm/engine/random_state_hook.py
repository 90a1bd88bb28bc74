"""Resume bit-identically: carry torch's random state in checkpoints.

mmengine restores weights, optimizer, schedulers and the data order on
resume: it re-draws the first ``iter`` batches, which also replays the numpy
/ ``random`` draws of the data pipeline. It does not restore torch's random
state of the main process, so dropout masks after a resume differ from an
uninterrupted run. This hook saves torch's CPU (and CUDA) generator states
with every checkpoint and puts them back just before the first training
step after a resume, i.e. after mmengine has replayed the data loader (the
batch of that step is already fetched). numpy / ``random`` are deliberately
not restored: the replay reproduces them, and rewinding them would repeat
the draws of the batch just fetched.

Validation during training would still make a resumed run differ from an
uninterrupted one: the checkpoint of iteration ``k`` is saved before the
validation of iteration ``k``, whose data loader draws its base seed from
torch's generator (and its model may draw too). So the hook also puts
torch's state back after every validation: validation leaves the training
run's random stream as it found it, and resuming from any checkpoint
reproduces the uninterrupted run bit for bit (tests/test_foundation.py,
with the configs' persistent loader workers).
"""
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

KEY = 'torch_random_state'


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save torch RNG states in checkpoints; restore them when resuming."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None
        self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = _get_state()

    def before_val(self, runner) -> None:
        self._before_val = _get_state()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            _set_state(self._before_val)
            self._before_val = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # load_from (fine-tuning) must not replay the old run's randomness.
        if getattr(runner, '_resume', False):
            self._pending = checkpoint.get(KEY)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None):
        if self._pending is None:
            return
        _set_state(self._pending)
        self._pending = None


def _get_state() -> dict:
    state = dict(cpu=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_state(state: dict) -> None:
    torch.set_rng_state(state['cpu'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
