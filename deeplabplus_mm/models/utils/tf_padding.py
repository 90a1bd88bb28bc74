"""TF's 'SAME' padding of a strided conv or pool, which depends on the input
size (torch's symmetric ``padding`` cannot express it)."""
import torch.nn.functional as F
from torch import Tensor


def tf_same_pad(x: Tensor, kernel_size: int, stride: int,
                value: float = 0.0) -> Tensor:
    """Pads ``x`` (NCHW) as TF's 'SAME' does for dilation 1: ``total =
    max((ceil(n / s) - 1) * s + k - n, 0)`` per dimension, ``total // 2``
    before, the rest after, with ``value`` (``-inf`` for a max pool: padded
    cells never win)."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: width, then height
        # ceil(n / s) from non-negative numbers only: an ONNX export turns
        # // into a division that truncates, which is a floor only there
        total = max(((n + stride - 1) // stride - 1) * stride + kernel_size
                    - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x
