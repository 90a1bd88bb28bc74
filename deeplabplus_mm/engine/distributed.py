"""Distributed training that also works on a CPU-only torch.

mmengine 0.10.7 + torch break a CPU ``torchrun`` launch three ways:
``init_dist('pytorch')`` calls ``torch.cuda.set_device`` (AttributeError on a
CPU build), the runner wraps the model in DDP with ``device_ids`` (refused for
CPU modules), and ``torch.nn.SyncBatchNorm`` refuses CPU tensors. On CPU,
:func:`setup_launcher` therefore starts the gloo process group itself and
selects :class:`CPUDistributedDataParallel`, which swaps every
``nn.SyncBatchNorm`` for :class:`CPUSyncBatchNorm` (statistics and gradients
reduced across ranks with autograd-aware all-reduces) before wrapping without
device ids. GPU runs are left to mmengine: NCCL and torch's SyncBatchNorm.
:func:`finish_launcher` ends such a gloo run without the process-group
teardown, which aborts now and then in torch 2.13.
"""
import gc
import logging
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.distributed.nn.functional import all_reduce
from torch.nn.modules.batchnorm import _BatchNorm


class CPUSyncBatchNorm(_BatchNorm):
    """Synchronised BatchNorm for any device and backend (gloo included).

    In training under an initialised process group, the batch statistics
    are those of the union of all ranks' batches: per-channel sums, sums of
    squares and counts are all-reduced with an autograd-aware all-reduce, so
    the backward pass reduces the statistics' gradients across ranks too, as
    ``torch.nn.SyncBatchNorm`` does with NCCL. Running statistics follow
    torch's rule (unbiased variance, ``momentum`` or cumulative average).
    Otherwise it is a plain BatchNorm. Parameter and buffer names equal
    torch's, so checkpoints move freely between the two.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input, got {input.dim()}D')

    def forward(self, x):
        self._check_input_dim(x)
        sync = (self.training and dist.is_available()
                and dist.is_initialized() and dist.get_world_size() > 1)
        if not sync:
            return super().forward(x)
        if self.momentum is None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
            factor = self.momentum
        # Two-pass statistics of the union of all ranks' batches; both
        # all-reduces are differentiable (their backward all-reduces too).
        dims = [0] + list(range(2, x.dim()))
        c = x.shape[1]
        total = all_reduce(
            torch.cat([x.sum(dims),
                       x.new_full((1, ), float(x.numel() // c))]))
        count = total[-1]
        mean = total[:c] / count
        shape = [1, c] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                n = count.item()
                self.running_mean.mul_(1 - factor).add_(factor * mean)
                self.running_var.mul_(1 - factor).add_(factor * var * n /
                                                       max(n - 1, 1))
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``nn.SyncBatchNorm`` in ``module`` (in place where
        possible), keeping parameters, buffers and ``requires_grad``."""
        if isinstance(module, nn.SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum,
                      module.affine, module.track_running_stats)
            new.load_state_dict(module.state_dict())
            if module.affine:
                new.weight.requires_grad_(module.weight.requires_grad)
                new.bias.requires_grad_(module.bias.requires_grad)
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU modules: no ``device_ids`` (DDP
    refuses them for CPU modules) and :class:`CPUSyncBatchNorm` in place of
    ``nn.SyncBatchNorm`` (which refuses CPU tensors)."""

    def __init__(self, module, device_ids=None, **kwargs):
        del device_ids  # mmengine passes [LOCAL_RANK]
        super().__init__(
            module=CPUSyncBatchNorm.convert(module), device_ids=None,
            **kwargs)


def setup_launcher(cfg) -> None:
    """Make ``cfg`` run under its launcher on this machine.

    With ``launcher='pytorch'`` and no CUDA, start the gloo process group
    (mmengine would call ``torch.cuda.set_device`` first) and use
    :class:`CPUDistributedDataParallel` unless the config names a wrapper.
    Nothing changes for GPU or non-distributed runs.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='CPUDistributedDataParallel')


def finish_launcher() -> None:
    """End a gloo (CPU) distributed run: the ranks leave together, then each
    process exits at once, without tearing the process group down.

    Call it last, after the runner is finished and released (the tools call
    it after their ``main()`` returns). torch 2.13's gloo teardown at the end
    of a process is unreliable: measured with two ranks through torchrun (DDP
    steps and ``all_gather_object``, then the end of the script), rank 0
    aborted with "terminate called without an active exception" (SIGABRT) in
    1 of 20 runs that just ended, 4 of 30 that ended after a barrier, and 2
    of 30 after a barrier and ``destroy_process_group`` (which also deadlocked
    in about 5 of 60 runs of the SyncBN test worker); a barrier followed by
    ``os._exit(0)`` ended cleanly in 40 of 40. Garbage is collected first
    (data loader workers shut down), log handlers and the standard streams are
    flushed, since ``os._exit`` runs no ``atexit`` handlers; mmengine closes
    its visualizer backends in ``after_run`` already.

    Does nothing unless a gloo process group is initialised: single-process
    runs and GPU (NCCL) runs end as mmengine's do.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() != 'gloo':
        return
    gc.collect()
    dist.barrier()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
