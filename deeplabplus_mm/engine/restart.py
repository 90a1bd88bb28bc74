"""Resume by itself when the job is restarted.

torchrun (``tools/dist_train.sh`` with ``MAX_RESTARTS``) restarts every
worker of a job when one of them dies and tells them how often it has done
so in ``TORCHELASTIC_RESTART_COUNT``; Slurm reruns a requeued batch job
(``sbatch --requeue``, preemption, a failed node) with
``SLURM_RESTART_COUNT``. A first start has neither (or 0) and resumes
nothing, as before; on a restart ``tools/train.py`` continues from the work
dir's ``last_checkpoint``, which names only complete checkpoints
(:class:`~deeplabplus_mm.engine.AtomicCheckpointHook`), or starts over when
no checkpoint was saved yet. Every rank reads the same ``last_checkpoint``:
the work dir must be shared by the nodes, as ``--resume`` needs too.
"""
import os
import os.path as osp
from typing import Optional

from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

# the variables a launcher sets on a restart, in the order they are named
RESTART_COUNTS = ('TORCHELASTIC_RESTART_COUNT', 'SLURM_RESTART_COUNT')


def restart_count() -> Optional[str]:
    """``NAME=N`` of the first restart counter above 0, or None (a first
    start)."""
    for name in RESTART_COUNTS:
        value = os.environ.get(name, '').strip()
        if value.isdigit() and int(value) > 0:
            return f'{name}={value}'
    return None


def resume_after_restart(cfg) -> Optional[str]:
    """On a restart, make ``cfg`` resume from the last checkpoint in
    ``cfg.work_dir`` (``cfg.resume``, ``cfg.load_from``); return that
    checkpoint, or None on a first start or before any checkpoint."""
    restart = restart_count()
    if restart is None:
        return None
    last = find_latest_checkpoint(cfg.work_dir) if osp.isfile(
        osp.join(cfg.work_dir, 'last_checkpoint')) else None
    if last and osp.isfile(last):
        print_log(f'Restarted ({restart}): resuming from {last}',
                  logger='current')
        cfg.resume = True
        cfg.load_from = last
        return last
    print_log(f'Restarted ({restart}): no checkpoint in {cfg.work_dir} '
              'yet, training from the start', logger='current')
    return None
