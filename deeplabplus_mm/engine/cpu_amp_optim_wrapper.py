"""Mixed precision on CPU: mmengine's AmpOptimWrapper asserts a GPU."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """Runs forward passes under ``torch.autocast('cpu', bfloat16)``.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed
    (nor done); parameters, gradients and optimizer state stay float32.
    ``tools/train.py --amp`` picks this wrapper when CUDA is unavailable.
    """

    def __init__(self, *args, dtype: str = 'bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
