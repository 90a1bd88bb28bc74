"""Imported by test configs (``custom_imports``) to kill training in the
middle of a checkpoint save, as a preempted or killed job dies there.

mmengine writes a checkpoint's bytes with ``LocalBackend.put``. The first
write to a file whose name contains ``$CRASH_IN_SAVE`` (e.g. ``iter_3.pth``)
writes half of the bytes, flushes them and kills this process (SIGKILL).
"""
import os
import os.path as osp
import signal

from mmengine.fileio import LocalBackend

_put = LocalBackend.put


def _put_or_die(self, obj, filepath):
    name = os.environ.get('CRASH_IN_SAVE')
    if name and name in osp.basename(str(filepath)):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    _put(self, obj, filepath)


LocalBackend.put = _put_or_die
