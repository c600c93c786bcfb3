"""Checkpoint loading that never executes code from the file.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and allow-listed classes are rebuilt. A
training checkpoint written by MMEngine also holds its message hub (``HistoryBuffer``) and NumPy arrays and scalars
from the logs; :data:`TRAINING_STATE_GLOBALS` lists exactly those classes, and :func:`training_state_globals`
allows them only while resuming one of our own runs. Nothing here turns ``weights_only`` off.

MMEngine pickles a ``HistoryBuffer`` with its whole ``__dict__``, which after training holds bound statistics methods
(``getattr(HistoryBuffer, 'min')``); allowing ``getattr`` would let a file reach any attribute of an allowed class.
We register (``copyreg``, the standard way to define how a third-party class pickles) a reduction to its data alone:
the log and count arrays and the maximum length, which ``HistoryBuffer(...)`` takes back on load.
"""
import contextlib
import copyreg

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _numpy_globals() -> list:
    # NumPy 2 moved its pickling helpers to numpy._core; NumPy 1 keeps them in numpy.core.
    core = getattr(np, '_core', None) or np.core
    dtype_classes = [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16', 'float32',
        'float64')]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def _reduce_history_buffer(buffer: HistoryBuffer):
    log_history, count_history = buffer.data
    return HistoryBuffer, (log_history, count_history, buffer.max_length)


copyreg.pickle(HistoryBuffer, _reduce_history_buffer)

TRAINING_STATE_GLOBALS = [HistoryBuffer, *_numpy_globals()]


@contextlib.contextmanager
def training_state_globals():
    """Allows, inside the ``with`` block only, the classes that our own training checkpoints contain."""
    with torch.serialization.safe_globals(TRAINING_STATE_GLOBALS):
        yield
