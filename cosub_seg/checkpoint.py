"""Checkpoint loading that never executes code from the file.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and allow-listed classes are rebuilt. A
training checkpoint written by MMEngine also holds its message hub (``HistoryBuffer``) and NumPy arrays and scalars
from the logs, so MMEngine's resume (and mmseg's own tools/test.py) fail with "Unsupported global". Importing
``cosub_seg`` (which every config does through ``custom_imports``) adds exactly those classes,
:data:`TRAINING_STATE_GLOBALS`, to torch's allow-list: each of them only rebuilds data, so a file still cannot run
code. Nothing here turns ``weights_only`` off or sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.

MMEngine reads local checkpoints (``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')``, mmseg's
tools) with ``torch.load`` and no ``weights_only`` argument, so the environment variable
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would turn unpickling of arbitrary code back on there. Importing ``cosub_seg``
registers :func:`load_from_local_weights_only` as MMEngine's loader for local paths: it passes ``weights_only=True``
explicitly (which the variable cannot override), reads ``.safetensors`` too, and names the file it refuses.

MMEngine pickles a ``HistoryBuffer`` with its whole ``__dict__``, which after training holds bound statistics methods
(``getattr(HistoryBuffer, 'min')``); allowing ``getattr`` would let a file reach any attribute of an allowed class.
We register (``copyreg``, the standard way to define how a third-party class pickles) a reduction to its data alone:
the log and count arrays and the maximum length, which ``HistoryBuffer(...)`` takes back on load.
"""
import copyreg
import os.path as osp
import pickle
from typing import Dict

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .errors import ConfigTypeError, DataError, MissingFileError, UnsafeCheckpointError


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

torch.serialization.add_safe_globals(TRAINING_STATE_GLOBALS)


def load_checkpoint_file(path: str, map_location='cpu') -> dict:
    """Reads a checkpoint without executing code: ``.safetensors`` through safetensors, anything else through
    ``torch.load(weights_only=True)``, which also admits :data:`TRAINING_STATE_GLOBALS` (so checkpoints written by
    ``tools/pretrain.py`` load). A file that needs any other class is refused with the class named."""
    if not osp.isfile(path):
        raise MissingFileError(f'checkpoint {path} does not exist')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path, device=map_location if isinstance(map_location, str) else 'cpu')
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines() if 'Unsupported global' in line),
                      str(err).splitlines()[0])
        raise UnsafeCheckpointError(
            f'{path} holds more than tensors and is refused, because loading it could run code ({reason[:300]}). '
            'Convert it to a plain state dict or to safetensors on a machine where you trust it.') from None
    if not isinstance(checkpoint, dict):
        raise ConfigTypeError(f'{path} holds a {type(checkpoint).__name__}, not a state dict or a checkpoint dict')
    return checkpoint


def load_from_local_weights_only(filename: str, map_location=None) -> dict:
    """MMEngine's loader for local paths (``CheckpointLoader`` scheme ''), through :func:`load_checkpoint_file`."""
    return load_checkpoint_file(osp.expanduser(filename), map_location=map_location)


CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)


def extract_state_dict(checkpoint: dict, path: str = '') -> Dict[str, torch.Tensor]:
    """The model weights in a checkpoint of any of the formats we accept.

    * ``tools/pretrain.py`` (MMEngine): ``checkpoint['state_dict']``; with MMEngine's EMAHook these are already the
      EMA weights (the hook swaps them in before saving), the raw weights sit in ``ema_state_dict``;
    * the DeiT / DeiT III releases: ``checkpoint['model']``;
    * a plain (timm) state dict: the dict itself.
    """
    for key in ('state_dict', 'model', 'module'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
            break
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise DataError(f'no tensors found in checkpoint {path}')
    return tensors
