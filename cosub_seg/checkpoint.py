"""Reading weights files without executing code from them, and putting their tensors under a timm model's names.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers and allow-listed classes are rebuilt. A
training checkpoint written by MMEngine also holds its message hub (``HistoryBuffer``) and NumPy arrays and scalars
from the logs. :func:`load_checkpoint_file` admits exactly those classes, :func:`training_state_globals`, for the
duration of the load (``torch.serialization.safe_globals``): each of them only rebuilds data, so a file still cannot
run code. Nothing here turns ``weights_only`` off or sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, and nothing here
changes torch or MMEngine for the rest of the process: :func:`cosub_seg.runtime.install` does that, for training runs
and MMEngine's own loading (see :mod:`cosub_seg.runtime.patches`).
"""
import os.path as osp
import pickle
import sys
from contextlib import contextmanager
from typing import Dict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging.history_buffer import HistoryBuffer
from timm.models import VisionTransformer
from timm.models.pit import PoolingVisionTransformer

from .errors import ConfigError, ConfigTypeError, DataError, MissingFileError, UnsafeCheckpointError


def _numpy_globals() -> list:
    # NumPy 2 moved its pickling helpers to numpy._core; NumPy 1 keeps them in numpy.core.
    core = getattr(np, '_core', None) or np.core
    dtype_classes = [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16', 'float32',
        'float64')]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def training_state_globals() -> list:
    """The classes an MMEngine training checkpoint holds besides tensors: the message hub's ``HistoryBuffer`` (with
    :func:`cosub_seg.runtime.patches` pickling it as its data only) and NumPy arrays, scalars and dtypes."""
    return [HistoryBuffer, *_numpy_globals()]


@contextmanager
def training_state_allowed():
    """Admits :func:`training_state_globals` to ``torch.load(weights_only=True)`` inside the block. Only the classes
    not allowed already are added: torch's ``safe_globals`` context removes on exit every class it was given, even one
    that was allowed before it (e.g. by :func:`cosub_seg.runtime.install`)."""
    allowed = torch.serialization.get_safe_globals()
    with torch.serialization.safe_globals([g for g in training_state_globals() if g not in allowed]):
        yield


def _unreadable(path: str, reason: str) -> DataError:
    return DataError(f'{path} is not a readable checkpoint ({reason[:200]}): a truncated download or copy, or not a '
                     'file written by torch.save. Download or copy it again.')


def load_checkpoint_file(path: str, map_location='cpu') -> dict:
    """Reads a checkpoint without executing code: ``.safetensors`` through safetensors, anything else through
    ``torch.load(weights_only=True)``, which also admits :func:`training_state_globals` (so checkpoints written by
    ``tools/pretrain.py`` load). A file that needs any other class is refused with the class named."""
    if not osp.isfile(path):
        raise MissingFileError(f'checkpoint {path} does not exist')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        device = str(map_location) if isinstance(map_location, (str, torch.device)) else 'cpu'
        return load_file(path, device=device)
    try:
        with training_state_allowed():
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        unsafe = next((line for line in lines if 'Unsupported global' in line), None)
        if unsafe is None:  # not a refusal: the bytes are no pickle torch's weights-only reader understands
            reason = next((line for line in lines if line.startswith('Unsupported ')), lines[0] if lines else '')
            raise _unreadable(path, reason) from None
        raise UnsafeCheckpointError(
            f'{path} holds more than tensors and is refused, because loading it could run code ({unsafe[:300]}). '
            'Convert it to a plain state dict or to safetensors on a machine where you trust it.') from None
    except RuntimeError as err:
        if 'PytorchStreamReader' not in str(err):
            raise
        raise _unreadable(path, str(err).split('.')[0]) from None
    if not isinstance(checkpoint, dict):
        raise ConfigTypeError(f'{path} holds a {type(checkpoint).__name__}, not a state dict or a checkpoint dict')
    return checkpoint


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


WRAPPER_PREFIXES = ('module.', 'backbone.')  # DDP-wrapped files; CosubClassifier's 'backbone.' + timm names


def check_patch_size(state: Dict[str, torch.Tensor], model: nn.Module, path: str = '') -> None:
    """Refuses weights whose patch embedding has another kernel than the model's (a ViT-B/14 file for a ViT-B/16):
    timm's filters would resample the kernel (FlexiViT's resize) and the network would silently be another one."""
    own = model.state_dict()
    for key, value in state.items():
        if not key.startswith('patch_embed') or key not in own or value.ndim != 4 or own[key].ndim != 4:
            continue
        if tuple(value.shape[-2:]) != tuple(own[key].shape[-2:]):
            where = f'{path}: ' if path else ''
            raise ConfigError(
                f'{where}{key} is a {tuple(value.shape[-2:])} patch kernel, the model {type(model).__name__} '
                f'uses {tuple(own[key].shape[-2:])}: the checkpoint was trained at another patch size. Pick the '
                f'architecture of the checkpoint (e.g. patch16 vs patch14 in the timm name, or '
                f'model_kwargs.patch_size={value.shape[-1]})')


def timm_state_dict(state: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """``state`` under the parameter names of the timm ``model``.

    Strips wrapper prefixes that every key carries, then runs the model family's own ``checkpoint_filter_fn`` (the
    conversion timm applies to published weights: DeiT III's ``gamma_1`` -> ``ls1.gamma``, position embeddings
    resampled to the model's grid, ...). PiT's position map is resampled here (its filter does not).
    """
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    check_patch_size(state, model)
    if isinstance(model, PoolingVisionTransformer):
        pos = state.get('pos_embed')
        if pos is not None and pos.shape[-2:] != model.pos_embed.shape[-2:]:
            state = dict(state, pos_embed=F.interpolate(pos.float(), size=model.pos_embed.shape[-2:], mode='bicubic',
                                                        align_corners=False))
    filter_fn = getattr(sys.modules[type(model).__module__], 'checkpoint_filter_fn', None)
    if filter_fn is None:
        return state
    if isinstance(model, VisionTransformer):
        return filter_fn(state, model, adapt_layer_scale=any('gamma_' in k for k in state))
    return filter_fn(state, model)
