"""Run under torchrun by tests/test_distributed.py (not a test itself).

Trains a small net built from our XceptionModule (SyncBN norm layers) for a
few SGD steps on a fixed batch of 4, split over WORLD_SIZE ranks, through
CPUDistributedDataParallel; rank 0 saves BN running stats, first-step
gradients and final weights. ``--plain-bn`` keeps unsynchronised BN (the
negative control); WORLD_SIZE=1 without a process group is the reference.
"""
import argparse
import os

import torch
import torch.distributed as dist
import torch.nn as nn

import deeplabplus_mm  # noqa: F401
from deeplabplus_mm.engine import (CPUDistributedDataParallel,
                                   finish_launcher)
from deeplabplus_mm.models.backbones.aligned_xception import XceptionModule


class Net(nn.Module):

    def __init__(self, norm_type):
        super().__init__()
        norm_cfg = dict(type=norm_type, eps=1e-3, momentum=0.1)
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = (nn.SyncBatchNorm(16)
                   if norm_type == 'SyncBN' else nn.BatchNorm2d(16))
        self.unit = XceptionModule(16, (16, 16, 24), 2, 1, (1, 1, 1), 'conv',
                                   False, norm_cfg)
        self.logits = nn.Conv2d(24, 5, 1)

    def forward(self, x):
        return self.logits(self.unit(self.bn(self.stem(x)))[0])


def build(norm_type):
    torch.manual_seed(0)
    return Net(norm_type)


def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 12, 10, generator=g) * 2 + 0.5
    y = torch.randint(0, 5, (4, 6, 5), generator=g)
    return x, y


def main():
    p = argparse.ArgumentParser()
    p.add_argument('out')
    p.add_argument('--plain-bn', action='store_true')
    p.add_argument('--steps', type=int, default=3)
    args = p.parse_args()
    world = int(os.environ.get('WORLD_SIZE', 1))
    rank = int(os.environ.get('RANK', 0))
    x, y = batch()
    if world > 1:
        dist.init_process_group('gloo')
        model = build('BN' if args.plain_bn else 'SyncBN')
        model = CPUDistributedDataParallel(model, broadcast_buffers=False)
        per = x.shape[0] // world
        x, y = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
        net = model.module
    else:
        model = net = build('BN')
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                          weight_decay=1e-3)
    grads = None
    for step in range(args.steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if step == 0:
            grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        opt.step()
    if rank == 0:
        torch.save(
            dict(
                grads=grads,
                state={k: v.clone() for k, v in net.state_dict().items()},
                bn_types=sorted({type(m).__name__ for m in net.modules()
                                 if 'Norm' in type(m).__name__})),
            args.out)
    finish_launcher()  # rank 0's file is written and closed already


if __name__ == '__main__':
    main()
