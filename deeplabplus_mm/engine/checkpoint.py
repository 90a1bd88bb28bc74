"""Checkpoints that load with ``torch.load(weights_only=True)``.

torch >= 2.6 unpickles checkpoints with ``weights_only=True``, which refuses
every global that is not allow-listed. A stock mmengine 0.10.7 checkpoint
holds three kinds of them, all in the message hub's ``HistoryBuffer``
statistics: the class itself, numpy arrays and scalars (``_reconstruct``,
``ndarray``, ``dtype``, ``scalar``) and, through ``HistoryBuffer.__getstate__``,
its statistics *functions*, pickled as ``builtins.getattr(HistoryBuffer,
'mean')``. Allow-listing ``getattr`` would let a crafted file fetch any
attribute reachable from an allowed object and plant it in
``HistoryBuffer._statistics_methods``, which the logger later calls.

So we make the message hub plain data instead: a ``HistoryBuffer`` pickles
as ``HistoryBuffer(log_history_list, count_history_list, max_length)`` (its
statistics methods are code, registered on the class at import time, not
state). The allow-list is then exactly what our checkpoints hold besides
tensors, dicts, lists, strings and numbers (which torch allows itself):
``HistoryBuffer`` (called with lists of numbers: harmless) and numpy
scalars (the runtime info's ``eta`` is a ``float64``: ``numpy.dtype`` and
numpy's ``scalar(dtype, bytes)``, which build a number from bytes). A file
that names any other global (``os.system``, ``builtins.getattr``, ...) is
refused by torch's unpickler before anything is called.
"""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# numpy's scalar reconstructor (numpy._core.multiarray.scalar in numpy 2,
# numpy.core.multiarray.scalar in numpy 1), taken from numpy itself.
NUMPY_SCALAR = np.float64(0).__reduce__()[0]
# A pickled dtype is rebuilt as an instance of its class (Float64DType...):
# the numeric ones only, no object or void dtypes.
NUMPY_DTYPES = tuple(
    type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32,
                                np.int64, np.uint8, np.uint16, np.uint32,
                                np.uint64, np.float16, np.float32, np.float64))
SAFE_GLOBALS = (HistoryBuffer, NUMPY_SCALAR, np.dtype) + NUMPY_DTYPES


def _history_buffer_reduce(self):
    return (HistoryBuffer, (self._log_history.tolist(),
                            self._count_history.tolist(), self.max_length))


def _history_buffer_setstate(self, state):
    # Only data is restored. Statistics methods are code registered on the
    # class; a file must not be able to replace them (stock mmengine's
    # __setstate__ merges the pickled ones into the class-level registry).
    self.max_length = int(state['max_length'])
    self._log_history = np.asarray(state['_log_history'], dtype=np.float64)
    self._count_history = np.asarray(state['_count_history'],
                                     dtype=np.float64)


def register_safe_checkpoints():
    """Make mmengine checkpoints plain data and allow-list HistoryBuffer.

    Part of :func:`~.runtime_setup.setup_runtime`; idempotent.
    """
    HistoryBuffer.__reduce__ = _history_buffer_reduce
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    torch.serialization.add_safe_globals(list(SAFE_GLOBALS))
