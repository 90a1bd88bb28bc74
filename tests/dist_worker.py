"""Run under torchrun by tests/test_distributed.py (not a test itself).

Edge cases of CPUSyncBatchNorm with two gloo ranks. Every rank holds the
whole batch of each case (same seeds), feeds its own part to
``CPUSyncBatchNorm`` and compares with torch's own BatchNorm on the whole
batch computed locally; rank R writes its findings to ``OUT.R.json``.
"""
import json
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

from deeplabplus_mm.engine import CPUSyncBatchNorm, finish_launcher

C = 6


def max_diff(a, b):
    if a.numel() == 0 and b.numel() == 0:
        return 0.0
    return (a.double() - b.double()).abs().max().item()


def all_reduced(t):
    t = t.clone()
    dist.all_reduce(t)
    return t


def split(x, counts, rank):
    start = sum(counts[:rank])
    return x[start:start + counts[rank]]


def pair(momentum=0.1, track=True):
    """Our layer and torch's, with the same non-trivial affine params."""
    g = torch.Generator().manual_seed(3)
    ref = nn.BatchNorm2d(C, momentum=momentum, track_running_stats=track)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(C, generator=g) + 0.5)
        ref.bias.copy_(torch.randn(C, generator=g))
    ours = CPUSyncBatchNorm(C, momentum=momentum, track_running_stats=track)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def step(ours, ref, x, grad, counts, rank):
    """One forward/backward of the split batch (ours) and of the whole
    batch (ref); the loss is ``sum(y * grad)``, so the input gradients of
    the two are the same numbers and the parameter gradients add up."""
    xr = x.clone().requires_grad_()
    y_ref = ref(xr)
    (y_ref * grad).sum().backward()
    xo = split(x, counts, rank).clone().requires_grad_()
    y = ours(xo)
    (y * split(grad, counts, rank)).sum().backward()
    out = dict(
        finite=bool(torch.isfinite(y).all() and torch.isfinite(xo.grad).all()
                    and torch.isfinite(ours.weight.grad).all()),
        y=max_diff(y, split(y_ref, counts, rank)),
        dx=max_diff(xo.grad, split(xr.grad, counts, rank)),
        dw=max_diff(all_reduced(ours.weight.grad), ref.weight.grad),
        db=max_diff(all_reduced(ours.bias.grad), ref.bias.grad))
    if ref.track_running_stats:
        out['mean'] = max_diff(ours.running_mean, ref.running_mean)
        out['var'] = max_diff(ours.running_var, ref.running_var)
    ours.zero_grad()
    ref.zero_grad()
    return out


def batch(n, seed, hw=(5, 7), loc=0.5, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, C, *hw, generator=g) * scale + loc,
            torch.randn(n, C, *hw, generator=g))


def main():
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    res = {}

    ours, ref = pair()
    x, grad = batch(4, 0)
    res['uneven_3_1'] = step(ours, ref, x, grad, [3, 1], rank)

    ours, ref = pair()
    res['empty_rank'] = step(ours, ref, x, grad, [4, 0], rank)

    # momentum=None: cumulative average over three batches of other sizes.
    ours, ref = pair(momentum=None)
    res['momentum_none'] = [
        step(ours, ref, *batch(n, 10 + n), [n - 1, 1], rank)
        for n in (2, 3, 5)
    ]
    res['momentum_none'][-1]['tracked'] = int(ours.num_batches_tracked)

    # No running statistics: batch statistics in training (synchronised)
    # and in evaluation (each rank its own batch, as torch's SyncBatchNorm).
    ours, ref = pair(momentum=None, track=False)
    res['untracked_train'] = step(ours, ref, x, grad, [2, 2], rank)
    ours.eval()
    own = split(x, [2, 2], rank)
    res['untracked_eval'] = max_diff(
        ours(own), nn.functional.batch_norm(own, None, None, ours.weight,
                                            ours.bias, True, 0.0, ours.eps))

    # bf16 autocast: statistics must be those of float32 BatchNorm on the
    # same bf16 values (a bf16 sum of 100 +- 1 values has no digits left).
    ours, ref = pair()
    x16 = batch(4, 7, hw=(16, 16), loc=100.0, scale=1.0)[0].bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y16 = ours(split(x16, [2, 2], rank))
    y32 = ref(x16.float())
    res['bf16'] = dict(
        dtype=str(y16.dtype),
        mean_rel=max_diff(ours.running_mean, ref.running_mean) /
        ref.running_mean.abs().max().item(),
        var_rel=max_diff(ours.running_var, ref.running_var) /
        ref.running_var.abs().max().item(),
        y=max_diff(y16, split(y32, [2, 2], rank)),
        y_scale=y32.abs().max().item())

    # One value per channel over all ranks: torch's error, on every rank.
    ours, ref = pair()
    one = torch.randn(1, C, 1, 1)
    try:
        ref(one)
    except ValueError as e:
        torch_msg = str(e)
    try:
        ours(one if rank == 0 else one[:0])
        res['one_value'] = dict(raised=None)
    except ValueError as e:
        res['one_value'] = dict(raised=str(e), torch=torch_msg)

    with open(f'{sys.argv[1]}.{rank}.json', 'w') as f:
        json.dump(res, f, indent=1)
    finish_launcher()


if __name__ == '__main__':
    main()
