"""Weights in and out: timm-format safetensors for backbones, mmseg ``init_model`` files for segmentors.

* :func:`export_backbone`: the network a ``tools/pretrain.py`` run trained (its EMA weights when it kept an EMA) as
  a timm model folder, ``model.safetensors`` + ``config.json`` (timm's own export format, written by
  ``timm.models.save_config_for_hf``). timm loads it with ``timm.create_model('local-dir:FOLDER', pretrained=True)``
  or ``timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=FOLDER/model.safetensors,
  num_classes=N), **model_kwargs)``; ``TimmSegBackbone`` takes the ``.safetensors`` file as its checkpoint.
* :func:`import_weights`: a DeiT III release of the authors (``{'model': ...}``, LayerScale as ``gamma_1`` /
  ``gamma_2``) or any timm state dict, checked key by key against the timm model and written in the same format.
* :func:`export_segmentor`: a fine-tuned segmentor as a config (the backbone's ``init_cfg`` removed: the weights
  are all in the checkpoint) and a weights-only checkpoint with the class names and palette, which
  ``mmseg.apis.init_model`` and mmseg's ``tools/test.py`` read.

Every file is read with :func:`cosub_seg.checkpoint.load_checkpoint_file` (safetensors or ``weights_only=True``).
"""
import json
import os
import os.path as osp
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope
from timm.models import get_pretrained_cfg_value

from .checkpoint import extract_state_dict, load_checkpoint_file, timm_state_dict
from .progress import track
from .errors import ConfigError
from .models.timm_factory import create_timm_model

def check_state_dict(state: Dict[str, torch.Tensor], model: nn.Module, source: str) -> None:
    """Raises ``ValueError`` naming every key of ``model`` that ``state`` lacks, every key of ``state`` the model
    does not have, and every shape that differs."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unused = sorted(set(state) - set(own))
    mismatched = [f'{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model'
                  for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f'{len(missing)} weights of the model are not in the file: {missing[:8]}')
    if unused:
        problems.append(f'{len(unused)} tensors of the file have no place in the model: {unused[:8]}')
    if mismatched:
        problems.append(f'{len(mismatched)} shapes differ: {mismatched[:5]}')
    if problems:
        raise ConfigError(f'{source} does not fit {type(model).__name__}: ' + '; '.join(problems) +
                          '. Check the architecture name and its model_kwargs (depth, width, patch size, classes).')


def save_timm_folder(model: nn.Module, state: Dict[str, torch.Tensor], out_dir: str, model_args: dict, source: str,
                     data_config: Optional[dict] = None, tag: str = 'cosub_seg') -> Dict[str, str]:
    """Loads ``state`` into ``model`` after checking that it is exactly the model's weights, then writes them with
    timm's ``save_for_hf``: ``out_dir/model.safetensors`` and ``out_dir/config.json`` (architecture,
    ``model_args`` to rebuild it, preprocessing). ``model`` must be built with ``model_args`` and nothing for
    training only (no drop-path rate). Errors name ``source``, the file the weights came from."""
    from timm.models import save_for_hf

    check_state_dict(state, model, source)
    own = model.state_dict()
    with torch.no_grad():
        for key, value in track(list(state.items())):
            own[key].copy_(value)
    # The tag names where the weights come from; timm's default tag would claim they are its published ones.
    save_for_hf(model, out_dir, model_config=dict(pretrained_cfg=dict(tag=tag)), model_args=model_args,
                safe_serialization=True, data_config=data_config)
    paths = dict(weights=osp.join(out_dir, 'model.safetensors'), config=osp.join(out_dir, 'config.json'))
    for path in paths.values():
        with_default_permissions(path)
    return paths


def with_default_permissions(path: str) -> None:
    """Gives ``path`` the permissions a new file gets (0o666 less the umask): safetensors writes its file through a
    private temporary file (0o600), which others sharing the exported weights could not read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _model_args(arch_kwargs: dict, num_classes: int) -> dict:
    return dict(arch_kwargs, num_classes=num_classes)


def export_backbone(config: str, checkpoint: str, out_dir: str, raw_weights: bool = False) -> Dict[str, str]:
    """Exports the timm network of a ``tools/pretrain.py`` run (``CosubClassifier``), classifier included.

    Args:
        config: the run's config file (it names the timm architecture and its arguments; the copy of the config in
            the checkpoint is Python code and is not executed).
        checkpoint: a checkpoint of that run. With MMEngine's EMAHook its ``state_dict`` holds the EMA weights,
            which are exported; ``raw_weights=True`` exports the trained weights instead.
        out_dir: folder for ``model.safetensors`` and ``config.json``.

    Returns:
        The paths written, and ``weights_kind``: 'ema', 'raw' or 'trained' (no EMA in the run).
    """
    cfg = Config.fromfile(config)
    if cfg.model.get('type') != 'CosubClassifier':
        raise ConfigError(f'{config} is not a pretraining config (model.type is {cfg.model.get("type")!r}, expected '
                          "'CosubClassifier'); for a segmentor use export_segmentor")
    ckpt = load_checkpoint_file(checkpoint)
    has_ema = 'ema_state_dict' in ckpt
    if raw_weights:
        if not has_ema:
            raise ConfigError(f'{checkpoint} has no ema_state_dict: the run kept no EMA, its state_dict is the '
                              'trained weights; export without raw_weights')
        # EMAHook swaps before saving: the raw weights sit in ema_state_dict as 'module.<name>'.
        source = {k[len('module.'):]: v for k, v in ckpt['ema_state_dict'].items() if k.startswith('module.')}
    else:
        source = extract_state_dict(ckpt, checkpoint)
    state = {k[len('backbone.'):]: v for k, v in source.items() if k.startswith('backbone.')}
    if not state:
        raise ConfigError(f'{checkpoint} holds no backbone.* weights: is it a checkpoint of tools/pretrain.py?')
    arch_kwargs = dict(cfg.model.get('model_kwargs') or {})
    model_args = _model_args(arch_kwargs, cfg.model.num_classes)
    model = create_timm_model(cfg.model.arch, **model_args)
    preprocessor = cfg.model.get('data_preprocessor') or {}
    mean = preprocessor.get('mean', (123.675, 116.28, 103.53))
    std = preprocessor.get('std', (58.395, 57.12, 57.375))
    # Our preprocessor normalises 0-255 RGB; timm's configs use 0-1. DeiT III tests at a crop ratio of 1.0.
    data_config = dict(mean=tuple(m / 255 for m in mean), std=tuple(s / 255 for s in std), crop_pct=1.0)
    paths = save_timm_folder(model, timm_state_dict(state, model), out_dir, model_args, checkpoint, data_config)
    paths['weights_kind'] = 'raw' if raw_weights else ('ema' if has_ema else 'trained')
    return paths


def import_weights(checkpoint: str, arch: str, out_dir: str, model_kwargs: Optional[dict] = None,
                   num_classes: Optional[int] = None) -> Dict[str, str]:
    """Converts published weights to a checked timm folder (see :func:`save_timm_folder`).

    Takes a DeiT III release of the authors (``{'model': ...}`` with ``gamma_1`` / ``gamma_2`` LayerScale and a
    position embedding without the class token), cosub's releases (the same format), a plain timm state dict, a
    ``tools/pretrain.py`` checkpoint or a ``.safetensors`` file. Every tensor must find its place in
    ``timm.create_model(arch, **model_kwargs)`` and every weight of the model must be in the file; otherwise the
    error lists what does not fit. The number of classes is read from the file's ``head.weight`` unless given.
    """
    state = extract_state_dict(load_checkpoint_file(checkpoint), checkpoint)
    if num_classes is None:
        classifier = f"{get_pretrained_cfg_value(arch, 'classifier') or 'head'}.weight"  # 'head', 'head.fc', ...
        head = next((v for k, v in state.items() if k == classifier or k.endswith('.' + classifier)), None)
        num_classes = head.shape[0] if head is not None else 0
    model_args = _model_args(dict(model_kwargs or {}), num_classes)
    model = create_timm_model(arch, **model_args)
    return save_timm_folder(model, timm_state_dict(state, model), out_dir, model_args, checkpoint, tag='imported')


def export_segmentor(config: str, checkpoint: str, out_dir: str) -> Dict[str, str]:
    """Writes ``out_dir/<config name>.py`` and ``out_dir/<config name>.pth`` for ``mmseg.apis.init_model``.

    The config is the training config with ``model.backbone.init_cfg`` removed (so loading it needs no
    pretraining file), no resume state and no work dir; the checkpoint holds only ``state_dict`` and
    ``meta.dataset_meta`` (class names and palette, which ``init_model`` reads), so it loads with
    ``weights_only=True`` in any process, without our allow-list. The weights are checked against the model the
    config builds before anything is written.
    """
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.registry import DATASETS as SEG_DATASETS

    cfg = Config.fromfile(config)
    ckpt = load_checkpoint_file(checkpoint)
    state = extract_state_dict(ckpt, checkpoint)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None
    cfg.load_from, cfg.resume = None, False
    # The training run's work dir: mmseg's test.py would write its evaluation there (our tools and mmseg's default
    # to work_dirs/<config name> without it).
    cfg.pop('work_dir', None)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmseg'):
        model = SEG_MODELS.build(cfg.model)
        dataset_meta = ckpt.get('meta', {}).get('dataset_meta')
        if not dataset_meta:
            dataset_cls = SEG_DATASETS.get(cfg.test_dataloader.dataset.type)
            dataset_meta = dict(getattr(dataset_cls, 'METAINFO', {}))
    check_state_dict(state, model, checkpoint)
    dataset_meta = {k: dataset_meta[k] for k in ('classes', 'palette') if k in dataset_meta}
    dataset_meta = json.loads(json.dumps(dataset_meta))  # plain lists and strings: nothing to allow-list
    name = osp.splitext(osp.basename(config))[0]
    os.makedirs(out_dir, exist_ok=True)
    config_out, weights_out = osp.join(out_dir, f'{name}.py'), osp.join(out_dir, f'{name}.pth')
    cfg.dump(config_out)
    tensors = {k: v.detach().to('cpu') for k, v in track(list(state.items()))}
    torch.save(dict(state_dict=tensors, meta=dict(dataset_meta=dataset_meta)), weights_out)
    return dict(config=config_out, checkpoint=weights_out)


__all__ = ['timm_state_dict', 'check_state_dict', 'save_timm_folder', 'export_backbone', 'import_weights',
           'export_segmentor']
