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
import subprocess
import sys
import traceback
from datetime import timedelta
from typing import Callable, List

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.autograd import Function
from torch.distributed.constants import default_pg_timeout
from torch.nn.modules.batchnorm import _BatchNorm


def _reduce_dims(x: torch.Tensor) -> List[int]:
    return [0] + list(range(2, x.dim()))


def _channel_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view([1, -1] + [1] * (x.dim() - 2))


def _all_reduce(tensor: torch.Tensor, group) -> torch.Tensor:
    dist.all_reduce(tensor, group=group)
    return tensor


class _BatchNormFunction(Function):
    """Training-mode BatchNorm whose statistics may span several processes,
    computed as torch's CPU BatchNorm computes them for one process.

    torch (ATen ``batch_norm_cpu_collect_stats_contiguous_impl``) sums each
    channel in float64 and rounds the mean to float32, sums the float32
    squares ``(x - mean)**2`` in float64 and rounds that sum to float32, and
    applies ``y = fma(x, alpha, fma(-mean, alpha, bias))`` with
    ``alpha = invstd * weight``. Done here with each rank's float64 partial
    sums all-reduced, a batch split over ranks gets bit for bit the output
    (and running statistics) torch's BatchNorm gives the whole batch in one
    process, short of rare ties in the float64 sums' order. That matters
    beyond the last digit: in a randomly initialised network one flipped
    ReLU shows in the 4th digit of the weights after one SGD step. (torch
    takes another path for channels_last or 1x1 inputs; there the two agree
    to float32 rounding.) In backward, the sums of ``dy`` and of
    ``(x - mean) * dy`` are float64 and all-reduced, as
    ``torch.nn.SyncBatchNorm`` does with NCCL. bf16/fp16 inputs (autocast)
    are normalised in float32, as torch's mixed-type BatchNorm does; the
    output has the input's dtype.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps,
                factor, group):
        dims = _reduce_dims(x)
        channels = x.shape[1]
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        stats = torch.cat([
            torch.sum(work, dims, dtype=torch.float64),
            torch.tensor([work.numel() // max(channels, 1)],
                         dtype=torch.float64)
        ])
        count = int(_all_reduce(stats, group)[-1].item())
        if count == 1:  # torch's error, raised on every rank alike
            raise ValueError('Expected more than 1 value per channel when '
                             f'training, got input size {x.size()}')
        if count == 0:  # every rank's batch is empty: nothing to learn
            ctx.count = 0
            return x.clone()
        mean = (stats[:channels] / count).to(work.dtype)
        centred = work - _channel_view(mean, work)
        var_sum = _all_reduce(
            torch.sum(centred * centred, dims, dtype=torch.float64),
            group).to(work.dtype)
        invstd = (1.0 / torch.sqrt((var_sum / count).double() + eps)).to(
            work.dtype)
        if running_mean is not None:
            unbiased = (var_sum / max(count - 1, 1)).double()
            running_mean.copy_(factor * mean.double() +
                               (1 - factor) * running_mean.double())
            running_var.copy_(factor * unbiased +
                              (1 - factor) * running_var.double())
        alpha = invstd if weight is None else invstd * weight.to(work.dtype)
        beta = -mean * alpha if bias is None else torch.addcmul(
            bias.to(work.dtype), -mean, alpha)
        out = torch.addcmul(
            _channel_view(beta, work), work, _channel_view(alpha, work))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.count, ctx.group = count, group
        ctx.has_bias = bias is not None
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.count == 0:
            return grad_out.clone(), None, None, None, None, None, None, None
        x, weight, mean, invstd = ctx.saved_tensors
        dims = _reduce_dims(x)
        channels = x.shape[1]
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        dy = grad_out.to(work.dtype)
        centred = work - _channel_view(mean, work)
        local = torch.cat([
            torch.sum(dy, dims, dtype=torch.float64),
            torch.sum(centred * dy, dims, dtype=torch.float64)
        ])
        sums = _all_reduce(local.clone(), ctx.group)
        count = ctx.count
        inv = invstd.double()
        grad_mean = (sums[:channels] / count).to(work.dtype)
        k = (sums[channels:] * inv * inv / count).to(work.dtype)
        scale = invstd if weight is None else invstd * weight.to(work.dtype)
        grad_in = torch.addcmul(
            dy - _channel_view(grad_mean, work), centred,
            _channel_view(k, work), value=-1) * _channel_view(scale, work)
        # Parameter gradients are this rank's own: DDP averages them.
        grad_weight = grad_bias = None
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = (local[channels:] * inv).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = local[:channels].to(
                x.dtype if weight is None else weight.dtype)
        return (grad_in.to(x.dtype), grad_weight, grad_bias, None, None, None,
                None, None)


class CPUSyncBatchNorm(_BatchNorm):
    """Synchronised BatchNorm for any device and backend (gloo included).

    In training under a process group with several ranks, the batch
    statistics are those of the union of all ranks' batches, computed as
    torch's CPU BatchNorm computes them for one process
    (:class:`_BatchNormFunction`): two ranks with half a batch each compute
    the forward pass of one process with the whole batch bit for bit, and
    its backward pass to float32 rounding. Otherwise (no process group, one
    rank, evaluation) it is torch's BatchNorm. Running statistics follow
    torch's rule (unbiased variance, ``momentum`` or, with
    ``momentum=None``, the cumulative average); without running statistics,
    evaluation uses each rank's own batch, as ``torch.nn.SyncBatchNorm``
    does. Parameter and buffer names equal torch's, so checkpoints move
    freely between the two.
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
        factor = 0.0
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked)
                      if self.momentum is None else self.momentum)
        return _BatchNormFunction.apply(x, self.weight, self.bias,
                                        self.running_mean, self.running_var,
                                        self.eps, factor, dist.group.WORLD)

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


# Launcher -> environment variables holding (rank, world size, local rank).
_RANK_ENV = dict(
    pytorch=('RANK', 'WORLD_SIZE', 'LOCAL_RANK'),
    slurm=('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'),
    mpi=('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
         'OMPI_COMM_WORLD_LOCAL_RANK'))


def _cpu_process_group_env(launcher: str) -> None:
    """Set what ``init_process_group(init_method='env://')`` reads (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT; and LOCAL_RANK) from the
    launcher's own variables, as mmengine's ``init_dist`` does, minus its
    CUDA calls. Slurm's master is the first host of ``SLURM_NODELIST``
    (``scontrol show hostname``) unless MASTER_ADDR is set."""
    names = _RANK_ENV[launcher]
    missing = [n for n in names[:2] if n not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} needs {" and ".join(missing)} in the '
            'environment (set by ' +
            dict(pytorch='torchrun / tools/dist_train.sh',
                 slurm='srun / tools/slurm_train.sh',
                 mpi='mpirun')[launcher] + ')')
    os.environ['RANK'] = os.environ[names[0]]
    os.environ['WORLD_SIZE'] = os.environ[names[1]]
    os.environ['LOCAL_RANK'] = os.environ.get(names[2], '0')
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        if launcher != 'slurm':
            raise RuntimeError(f'--launcher {launcher} needs MASTER_ADDR')
        nodes = os.environ.get('SLURM_NODELIST', '')
        proc = subprocess.run(['scontrol', 'show', 'hostname', nodes],
                              capture_output=True, text=True)
        hosts = proc.stdout.split()
        if proc.returncode != 0 or not hosts:
            raise RuntimeError('cannot find the master host of SLURM_NODELIST='
                               f'{nodes!r} with scontrol: set MASTER_ADDR')
        os.environ['MASTER_ADDR'] = hosts[0]


def restarted_store():
    """The store a worker that torchrun restarted joins its process group
    through, in a key space of its own; None on a first start.

    torchrun's static rendezvous (``tools/dist_train.sh``) keeps one
    TCPStore, hosted by the agent, for all restarts of a job, and the
    workers join their process group through it
    (``TORCHELASTIC_USE_AGENT_STORE``) under the same keys on every attempt:
    a restarted rank can read the address that a killed rank published (seen
    here: gloo's ``connectFullMesh`` refused on the first restart; with NCCL,
    a stale unique id: pytorch/pytorch#135712). Keys prefixed with the
    restart count keep the attempts apart.
    """
    count = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    if (os.environ.get('TORCHELASTIC_USE_AGENT_STORE') != 'True'
            or not count.isdigit() or int(count) == 0):
        return None
    store = dist.TCPStore(
        os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']),
        is_master=False, timeout=default_pg_timeout)
    return dist.PrefixStore(f'deeplabplus_mm/restart_{count}', store)


def _init_process_group(backend: str, store, dist_cfg) -> None:
    kwargs = {}
    if dist_cfg.get('timeout') is not None:  # seconds, as mmengine's
        kwargs['timeout'] = timedelta(seconds=dist_cfg['timeout'])
    dist.init_process_group(
        backend=backend,
        store=store,
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)


def setup_launcher(cfg) -> None:
    """Make ``cfg`` run under its launcher, with or without CUDA.

    With a distributed launcher (``pytorch``: torchrun; ``slurm``: srun;
    ``mpi``) and no CUDA, start the gloo process group from the launcher's
    environment (mmengine's ``init_dist`` would call ``torch.cuda`` first)
    and use :class:`CPUDistributedDataParallel` unless the config names a
    wrapper. A worker that torchrun restarted joins through
    :func:`restarted_store` (on GPUs too: the process group is then started
    here, on the ``LOCAL_RANK`` device, instead of by mmengine). Nothing
    else changes for GPU or non-distributed runs.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if torch.cuda.is_available():
        store = restarted_store() if launcher == 'pytorch' else None
        if store is not None and not dist.is_initialized():
            torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
            _init_process_group(dist_cfg.get('backend', 'nccl'), store,
                                dist_cfg)
        return
    dist_cfg['backend'] = 'gloo'
    if not dist.is_initialized():
        _cpu_process_group_env(launcher)
        _init_process_group('gloo', restarted_store(), dist_cfg)
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='CPUDistributedDataParallel')


def _gloo_group() -> bool:
    return (dist.is_available() and dist.is_initialized()
            and dist.get_backend() == 'gloo')


def _flush_and_exit(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def finish_launcher() -> None:
    """End a gloo (CPU) distributed run: the ranks leave together, then each
    process exits at once, without tearing the process group down.

    Call it last, after the runner is finished and released (the tools call
    it through :func:`run_main`). torch's gloo teardown at the end of a
    process aborts rank 0 now and then (SIGABRT, "terminate called without
    an active exception"), with or without a barrier or
    ``destroy_process_group`` (which can also deadlock); a barrier followed
    by ``os._exit(0)`` does not (docs/benchmarks.md, section 11). Garbage is
    collected first (data loader workers shut down), log handlers and the
    standard streams are flushed, since ``os._exit`` runs no ``atexit``
    handlers; mmengine closes its visualizer backends in ``after_run``.

    Does nothing unless a gloo process group is initialised: single-process
    runs and GPU (NCCL) runs end as mmengine's do.
    """
    if not _gloo_group():
        return
    gc.collect()
    dist.barrier()
    _flush_and_exit(0)


def run_main(main: Callable[[], None]) -> None:
    """Run a tool's ``main()`` and end gloo runs cleanly, failed ones too.

    On success, :func:`finish_launcher`. When ``main()`` raises inside a
    gloo process group, this rank prints its traceback and exits at once
    with status 1 (or the ``SystemExit`` code; a message given to
    ``sys.exit`` is printed, as Python does), without a barrier (the
    other ranks may never reach one: torchrun / srun stop them when one
    rank fails) and without the gloo teardown, which would abort (SIGABRT)
    or hang now and then, hiding the run's own error. Outside a gloo group
    exceptions propagate as usual.
    """
    try:
        main()
    except BaseException as e:
        if not _gloo_group():
            raise
        code = e.code if isinstance(e, SystemExit) else 1
        if not isinstance(e, SystemExit):
            traceback.print_exc()
        elif code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)  # sys.exit('message'), as Python
        _flush_and_exit(0 if code is None else
                        code if isinstance(code, int) else 1)
    finish_launcher()
