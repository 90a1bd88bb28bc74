"""Train a segmentor: mmseg's ``tools/train.py`` with our modules registered
and CPU-only distributed runs made to work (gloo, CPU SyncBN, DDP without
device ids). Same flags as mmseg's tool. Made for long runs: a run that
torchrun restarts or Slurm requeues resumes from the work dir's last
checkpoint by itself, checkpoints are saved atomically, and a failed save or
a NaN / Inf loss ends the run with one line (README, "Long runs")."""
import argparse
import logging
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from deeplabplus_mm.engine import (CheckpointSaveError, NonFiniteLossError,
                                   resume_after_restart, run_main,
                                   setup_launcher, setup_runtime,
                                   use_atomic_checkpoints)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir '
        'automatically (a run restarted by torchrun or requeued by Slurm '
        'does so without it)')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (fp16 on GPU, '
        'bf16 on CPU)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    setup_runtime()  # checkpoints that load weights_only
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if cfg.optim_wrapper.type == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        else:
            assert cfg.optim_wrapper.type == 'OptimWrapper', (
                '`--amp` is only supported when the optimizer wrapper type '
                f'is `OptimWrapper` but got {cfg.optim_wrapper.type}.')
            if torch.cuda.is_available():
                cfg.optim_wrapper.type = 'AmpOptimWrapper'
                cfg.optim_wrapper.loss_scale = 'dynamic'
            else:  # mmengine's AmpOptimWrapper refuses CPU: bf16 autocast
                cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
    cfg.resume = args.resume
    resume_after_restart(cfg)
    use_atomic_checkpoints(cfg)
    setup_launcher(cfg)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    try:
        runner.train()
    except (CheckpointSaveError, NonFiniteLossError) as e:
        # every rank stops; rank 0 says why
        sys.exit(f'error: {e}' if is_main_process() else 1)


if __name__ == '__main__':
    run_main(main)  # gloo runs end without the teardown, failed ones too
