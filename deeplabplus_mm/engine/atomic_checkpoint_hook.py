"""Checkpoints that are never half-written; a save that fails ends the run
with one line naming the file and the cause.

On a local disk, mmengine's ``CheckpointHook`` writes ``iter_N.pth`` in
place (a kill or a full disk during the write leaves a truncated file under
the final name), rewrites ``last_checkpoint`` in place (a kill between the
truncation and the write leaves it empty, and ``--resume`` then fails) and,
with ``max_keep_ckpts``, deletes the oldest checkpoint *before* it saves the
new one (with ``max_keep_ckpts=1`` a failing save leaves no checkpoint).

:class:`AtomicCheckpointHook` takes every ``CheckpointHook`` option and
saves in this order instead: the checkpoint goes to ``iter_N.pth.part``,
is flushed to the disk (fsync) and renamed to ``iter_N.pth``
(``os.replace``, atomic); ``last_checkpoint`` is replaced the same way; only
then is the checkpoint that falls out of ``max_keep_ckpts`` deleted. A
failed write removes its ``.part`` file and raises
:class:`CheckpointSaveError` on every rank (rank 0 broadcasts the outcome),
so a distributed run ends at once with the same message; the previous
checkpoint and ``last_checkpoint`` are untouched and ``--resume`` continues
from them. ``.part`` files left by a killed save are deleted at the next
start. ``tools/train.py`` puts this hook in place of ``CheckpointHook``
(:func:`use_atomic_checkpoints`). Other storage backends (``backend_args``
naming one, e.g. an object store, whose uploads are atomic) are left to
``CheckpointHook``.
"""
import errno
import glob
import os
import os.path as osp
from typing import Optional

from mmengine.dist import (broadcast_object_list, get_world_size,
                           is_main_process)
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

PART = '.part'
LAST = 'last_checkpoint'


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be saved; the message names it and the cause."""


def _fsync(path: str) -> None:
    """Flush a file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    """Flush a folder's entries (a rename) to the disk where the file
    system can; the rename is atomic either way."""
    try:
        _fsync(path)
    except OSError:
        pass


def _replace_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through ``path.part`` and a rename."""
    part = path + PART
    try:
        with open(part, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    except BaseException:
        _remove(part)
        raise


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _cause(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        name = errno.errorcode.get(e.errno)
        return f'{e.strerror} ({name})' if name else e.strerror
    return f'{type(e).__name__}: {e}'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose saves on a local disk are atomic (see the
    module's docstring); same arguments."""

    def _local(self) -> bool:
        return (self.file_client_args is None
                and type(self.file_backend) is LocalBackend)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not (self._local() and is_main_process()):
            return
        pattern = osp.join(
            glob.escape(self.out_dir),
            glob.escape(self.filename_tmpl).replace('{}', '*') + PART)
        for path in sorted(glob.glob(pattern)):
            _remove(path)
            runner.logger.info(f'Removed {path}, left by an interrupted '
                               'checkpoint save')

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        # CheckpointHook's bookkeeping of max_keep_ckpts, but the checkpoint
        # that falls out is deleted after the new one is in place.
        dropped = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                dropped = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        path = self.file_backend.join_path(self.out_dir, filename)
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)
        error = None
        if is_main_process():
            error = self._save(runner, filename, path, meta)
        if get_world_size() > 1:
            outcome = [error]
            broadcast_object_list(outcome, src=0)
            error = outcome[0]
        if error is not None:
            runner.logger.error(error)
            raise CheckpointSaveError(error)
        if dropped is not None and is_main_process():
            old = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(dropped))
            if osp.isdir(old):  # checkpoints saved by deepspeed
                self.file_backend.rmtree(old)
            else:
                _remove(old)

    def _save(self, runner, filename: str, path: str,
              meta: dict) -> Optional[str]:
        """Save ``path`` atomically and point ``last_checkpoint`` at it;
        the error message, or None."""
        part = path + PART
        last = osp.join(runner.work_dir, LAST)
        try:
            runner.save_checkpoint(
                self.out_dir,
                filename + PART,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
            _fsync(part)
            os.replace(part, path)
            _fsync_dir(self.out_dir)
        except Exception as e:
            _remove(part)
            return (f'cannot save checkpoint {path}: {_cause(e)}; '
                    f'{_kept(last)}')
        try:
            _replace_text(last, path)
            _fsync_dir(runner.work_dir)
        except Exception as e:
            return (f'saved {path} but cannot update {last}: {_cause(e)}; '
                    f'{_kept(last)}')
        return None


def _kept(last: str) -> str:
    """What ``--resume`` will continue from, for the error message."""
    try:
        with open(last) as f:
            previous = f.read().strip()
    except OSError:
        previous = ''
    if previous:
        return f'{LAST} still names {previous}: --resume continues from it'
    return 'no earlier checkpoint to resume from'


def use_atomic_checkpoints(cfg) -> None:
    """Save ``cfg``'s checkpoints with :class:`AtomicCheckpointHook`: it
    replaces ``default_hooks.checkpoint`` of type ``CheckpointHook`` (with
    the same options) and stands in for mmengine's default one (interval 1)
    when the config names none. ``checkpoint=None`` stays off; other hook
    types are left alone."""
    hooks = cfg.get('default_hooks')
    if hooks is None:
        hooks = cfg.default_hooks = {}
    if 'checkpoint' not in hooks:
        hooks['checkpoint'] = dict(type='AtomicCheckpointHook', interval=1)
        return
    hook = hooks['checkpoint']
    if not isinstance(hook, dict):
        return
    kind = hook.get('type')
    if kind is CheckpointHook or (isinstance(kind, str) and kind.split(
            '.')[-1] == 'CheckpointHook'):
        hook['type'] = 'AtomicCheckpointHook'
