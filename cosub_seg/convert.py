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
  ``mmseg.apis.init_model`` and mmseg's ``tools/test.py`` read; in the same folder the self-describing model
  folder (``config.json`` + ``model.safetensors`` + ``README.md``, :mod:`cosub_seg.inference.model_folder`), which
  :class:`cosub_seg.inference.Segmenter` loads.
* :func:`export_onnx`: that folder's segmentor (backbone + neck + decode head) as ``model.onnx`` for ONNX Runtime,
  checked against PyTorch's logits before config.json records it.

Every file is read with :func:`cosub_seg.checkpoint.load_checkpoint_file` (safetensors or ``weights_only=True``).
"""
import copy
import json
import os
import os.path as osp
import time
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope
from timm.models import get_pretrained_cfg_value

from .checkpoint import extract_state_dict, load_checkpoint_file, timm_state_dict
from .progress import track
from .errors import ConfigError
from .inference import model_folder as folder_format
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

    The same folder also gets ``config.json`` + ``model.safetensors`` + ``README.md`` (the self-describing model
    folder of :mod:`cosub_seg.inference.model_folder`, laid out like a Hugging Face Hub model); a ``model.onnx``
    left there by an earlier export is removed (it holds other weights): ``export_onnx`` writes it again.
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
    folder = write_model_folder(cfg, tensors, dataset_meta, out_dir, name)
    return dict(config=config_out, checkpoint=weights_out, **folder)


def write_model_folder(cfg: Config, tensors: Dict[str, torch.Tensor], dataset_meta: dict, out_dir: str,
                       name: str) -> Dict[str, str]:
    """``out_dir/config.json``, ``model.safetensors`` and ``README.md`` of a checked segmentor state dict."""
    from safetensors.torch import save_file

    classes = dataset_meta.get('classes') or [f'class {i}' for i in range(cfg.model.decode_head.num_classes)]
    description = folder_format.segmentor_description(cfg.model.to_dict(), classes, dataset_meta.get('palette'),
                                                      cfg.get('tta_pipeline'), name)
    weights = osp.join(out_dir, folder_format.WEIGHTS_NAME)
    save_file({k: v.contiguous() for k, v in tensors.items()}, weights, metadata=dict(format='pt'))
    with_default_permissions(weights)
    stale = osp.join(out_dir, folder_format.ONNX_NAME)
    for path in (stale, stale + '.data'):
        if osp.isfile(path):
            os.remove(path)
    description['files'] = {folder_format.WEIGHTS_NAME: folder_format.file_digest(weights)}
    config_json = folder_format.write_config(out_dir, description)
    return dict(folder=out_dir, model_config=config_json, weights=weights)


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two averaging matrices built from the input's size (``A_h @ x @ A_w^T``, the
    same bins: start ``floor(i * H / s)``, end ``ceil((i + 1) * H / s)``). ONNX has no adaptive pooling: the
    exporter bakes torch's bins for the example's size into the graph, so UperHead's pyramid pooling module would
    fail at any other size; these matrices follow the size."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _bins(size, out: int, like: torch.Tensor) -> torch.Tensor:
        i = torch.arange(out, device=like.device)
        start = torch.div(i * size, out, rounding_mode='floor')
        end = torch.div((i + 1) * size + out - 1, out, rounding_mode='floor')
        j = torch.arange(size, device=like.device)
        inside = (j[None] >= start[:, None]) & (j[None] < end[:, None])
        return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_h, out_w = (x.shape[2] if s is None else s for s in self.output_size)
        rows, cols = self._bins(x.shape[2], out_h, x), self._bins(x.shape[3], out_w, x)
        return torch.einsum('ih,nchw,jw->ncij', rows, x, cols)


class SegmentorLogits(nn.Module):
    """What model.onnx computes: normalised images (N, 3, H, W) -> logits (N, C, H, W) at the input's size, the
    segmentor's own ``encode_decode`` (backbone, neck, decode head, resize), with every adaptive average pooling
    replaced by :class:`ExportableAdaptiveAvgPool2d`."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = copy.deepcopy(segmentor).eval()
        for module in list(self.segmentor.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, nn.AdaptiveAvgPool2d):
                    setattr(module, child_name, ExportableAdaptiveAvgPool2d(child.output_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentor.encode_decode(x, [dict(img_shape=x.shape[2:])])


def _onnx_logits(path: str, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def export_onnx(folder: str, opset: int = 18, dynamic: bool = True, check_sizes: Optional[Sequence] = None,
                tolerance: float = 1e-3) -> Dict[str, object]:
    """Writes ``folder/model.onnx`` from ``folder/model.safetensors`` and records it in ``folder/config.json``.

    The graph takes normalised images (``pixel_values``, (N, 3, H, W) float32) and gives ``logits`` (N, C, H, W) at
    the input's size: backbone + neck + decode head (the auxiliary head is training only). Exported with torch's
    dynamo exporter (``torch.onnx.export(dynamo=True)``; the TorchScript exporter cannot export the bicubic
    position-embedding resampling of timm's ViTs). ``dynamic`` asks for any batch, height and width; where the
    export fails or the graph does not reproduce PyTorch at a second size, the model is exported again for the
    crop size only (``dynamic_size: false`` and the reason in config.json; :class:`Segmenter` then runs it in slide
    mode).

    Before config.json records the file, ONNX Runtime's logits are compared with PyTorch's (the model as built by
    mmseg, with its own pooling) at the crop size and at ``check_sizes`` (default: the crop plus 32 x 64 pixels);
    a difference above ``tolerance`` is an error.
    """
    from .inference.segmenter import build_torch_segmentor, size_multiple

    info = folder_format.read_model_folder(folder)
    weights = info.file(folder_format.WEIGHTS_NAME)
    model = build_torch_segmentor(info.config['model'], weights)
    crop = tuple(info.test_mode['crop_size'])
    sizes = [crop] + [tuple(s) for s in (check_sizes or [(crop[0] + 32, crop[1] + 64)])]
    out = osp.join(info.path, folder_format.ONNX_NAME)
    tick = time.time()
    reason = None
    entry = None
    if dynamic:
        try:
            entry = _export_and_check(model, out, opset, True, sizes, tolerance)
        except Exception as err:  # the exporter's or ONNX Runtime's errors: the static export is the fallback
            reason = _export_error(err)
    if entry is None:
        entry = _export_and_check(model, out, opset, False, sizes[:1], tolerance)
        if reason:
            entry['dynamic_size_error'] = reason
    entry['size_multiple'] = size_multiple(model)
    entry['export_seconds'] = round(time.time() - tick, 1)
    entry.update(folder_format.file_digest(out))
    info.config['files'][folder_format.ONNX_NAME] = entry
    folder_format.write_config(info.path, info.config)
    with_default_permissions(out)
    return dict(onnx=out, model_config=osp.join(info.path, folder_format.CONFIG_NAME), **entry)


def _export_error(err: Exception) -> str:
    """The part of an exporter's error that says what failed (torch's first lines are advice)."""
    text = ' '.join(str(err).replace('\x1b[96m', '').replace('\x1b[0m', '').split())
    for marker in ('## Exception summary', 'Constraints violated'):
        if marker in text:
            text = text[text.index(marker):]
    return f'{type(err).__name__}: {text[:400]}'


def _export_and_check(model: nn.Module, out: str, opset: int, dynamic: bool, sizes: Sequence[Tuple[int, int]],
                      tolerance: float) -> dict:
    wrapper = SegmentorLogits(model).eval()
    # The example is not the crop size where there is another: at the size a backbone is built for, timm (and our
    # PiT forward) skip the position-embedding resampling, and the graph would keep that shortcut.
    example = torch.randn(2, 3, *(sizes[1] if dynamic and len(sizes) > 1 else sizes[0]))
    kwargs = dict(input_names=['pixel_values'], output_names=['logits'], opset_version=opset, dynamo=True,
                  external_data=False)
    # Dim.AUTO: the exporter derives what the network takes (a ViT: multiples of its patch size) instead of failing
    # on a range we would have to guess per family. Any batch: slide inference runs several windows at once.
    axes = {0: torch.export.Dim.AUTO}
    if dynamic:
        axes.update({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO})
    kwargs['dynamic_shapes'] = {'x': axes}
    torch.onnx.export(wrapper, (example, ), out, **kwargs)
    worst = 0.0
    for i, size in enumerate(sizes):
        x = torch.randn(1 if i else 2, 3, *size)
        with torch.no_grad():
            expected = model.encode_decode(x, [dict(img_shape=x.shape[2:])])
        got = _onnx_logits(out, x)
        if got.shape != expected.shape:
            raise ConfigError(f'{out} gives logits of shape {tuple(got.shape)} for a {size} input, PyTorch '
                              f'{tuple(expected.shape)}')
        worst = max(worst, float((got - expected).abs().max()))
    if worst > tolerance:
        raise ConfigError(f'{out}: ONNX Runtime and PyTorch logits differ by {worst:.2e} (> {tolerance:g}) at '
                          f'sizes {sizes}')
    return dict(input='pixel_values', output='logits', opset=opset, dynamic_size=dynamic,
                static_size=None if dynamic else list(sizes[0]), checked_sizes=[list(s) for s in sizes],
                max_abs_diff=worst, exporter=f'torch.onnx.export(dynamo=True), torch {torch.__version__}')


__all__ = ['timm_state_dict', 'check_state_dict', 'save_timm_folder', 'export_backbone', 'import_weights',
           'export_segmentor', 'write_model_folder', 'export_onnx', 'ExportableAdaptiveAvgPool2d', 'SegmentorLogits']
