"""The self-describing model folder of a fine-tuned segmentor, laid out like a Hugging Face Hub model repository:

* ``config.json``: what the weights are (the mmseg model config, the timm backbone, the class names and palette,
  the normalisation, the crop and the test mode, the label-file convention) and a checksum of every file;
* ``model.safetensors``: the segmentor's ``state_dict`` (PyTorch, for :class:`cosub_seg.inference.Segmenter`'s torch
  backend, built through mmseg);
* ``model.onnx`` (optional, ``tools/convert_checkpoint.py onnx``): backbone + neck + decode head in one graph, which
  ONNX Runtime runs without torch, mmcv, mmseg or MMEngine;
* ``README.md``: a model card (Hub metadata in its front matter).

``huggingface-cli upload ORG/NAME FOLDER`` (or ``HfApi().upload_folder``) pushes it as it is; nothing here talks to a
network. Reading a folder (:func:`read_model_folder`) needs only the standard library: the checks name the file at
fault (missing, not JSON, another format, a checksum that does not match).
"""
import hashlib
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..errors import ConfigError, DataError, MissingFileError

CONFIG_NAME = 'config.json'
WEIGHTS_NAME = 'model.safetensors'
ONNX_NAME = 'model.onnx'
CARD_NAME = 'README.md'
FORMAT = 'cosub_seg.segmentor'
FORMAT_VERSION = 1
# Label files (tools/segment.py) follow ADE20k: 0 = unlabeled / other, class i is stored as i + 1 (what mmseg's
# reduce_zero_label, which our datasets use, undoes on reading).
LABEL_OFFSET = 1
LABEL_CONVENTION = ('ADE20k: 0 = unlabeled/other, class i (0-based, in the order of "classes") is stored as i + 1; '
                    "mmseg's LoadAnnotations(reduce_zero_label=True) reads it back")


def file_digest(path: str) -> Dict[str, object]:
    """``{'sha256': ..., 'bytes': ...}`` of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return dict(sha256=digest.hexdigest(), bytes=os.path.getsize(path))


@dataclass
class ModelFolder:
    """A model folder's ``config.json``, checked (see :func:`read_model_folder`)."""

    path: str
    config: dict = field(repr=False)

    @property
    def classes(self) -> List[str]:
        return list(self.config['classes'])

    @property
    def palette(self) -> List[List[int]]:
        return [list(c) for c in self.config['palette']]

    @property
    def num_classes(self) -> int:
        return len(self.config['classes'])

    @property
    def mean(self) -> List[float]:
        return list(self.config['preprocessing']['mean'])

    @property
    def std(self) -> List[float]:
        return list(self.config['preprocessing']['std'])

    @property
    def test_mode(self) -> dict:
        """``dict(mode='whole'|'slide', crop_size=(h, w), stride=(h, w))``: the config's test mode, with the crop and
        stride slide inference uses (the config's own, else the training crop and two thirds of it)."""
        return dict(self.config['test_mode'])

    @property
    def onnx(self) -> Optional[dict]:
        """The ``model.onnx`` entry (input/output names, opset, ``dynamic_size``), or None when not exported."""
        return self.config.get('files', {}).get(ONNX_NAME)

    def file(self, name: str, verify: bool = True) -> str:
        """The path of ``name`` in the folder, after checking it exists and (``verify``) that its size and sha256
        are those config.json records: a file from another export is refused, naming it."""
        path = osp.join(self.path, name)
        if not osp.isfile(path):
            raise MissingFileError(f'{path} does not exist: the model folder {self.path} lacks {name} '
                                   f'({self._what_writes(name)})')
        expected = self.config.get('files', {}).get(name)
        if expected is None:
            raise ConfigError(f'{osp.join(self.path, CONFIG_NAME)} does not describe {path}: the file is not from '
                              f'this export ({self._what_writes(name)})')
        if verify:
            actual = file_digest(path)
            if (actual['bytes'], actual['sha256']) != (expected.get('bytes'), expected.get('sha256')):
                raise DataError(f'{path} does not match {osp.join(self.path, CONFIG_NAME)} ({actual["bytes"]} bytes, '
                                f'sha256 {actual["sha256"][:12]}..., recorded: {expected.get("bytes")} bytes, '
                                f'{str(expected.get("sha256"))[:12]}...): the file was changed or comes from another '
                                f'export; {self._what_writes(name)}')
        return path

    @staticmethod
    def _what_writes(name: str) -> str:
        if name == ONNX_NAME:
            return 'write it with `python tools/convert_checkpoint.py onnx FOLDER`'
        return 'write the folder again with `python tools/convert_checkpoint.py segmentor CONFIG CHECKPOINT FOLDER`'


def _require(config: dict, keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in config]
    if missing:
        raise ConfigError(f'{where} lacks {missing}: it is not a complete {FORMAT} config; write the folder again '
                          'with `python tools/convert_checkpoint.py segmentor CONFIG CHECKPOINT FOLDER`')


def read_model_folder(path: str) -> ModelFolder:
    """Reads and checks ``path/config.json``: the format and its version, the keys the inference needs, one palette
    colour per class. Errors name the file."""
    if not osp.isdir(path):
        raise MissingFileError(f'model folder {path} does not exist (or is not a folder)')
    config_path = osp.join(path, CONFIG_NAME)
    if not osp.isfile(config_path):
        raise MissingFileError(f'{config_path} does not exist: {path} is not a cosub_seg model folder (written by '
                               '`python tools/convert_checkpoint.py segmentor` or tools/pipeline.py)')
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f'{config_path} is not valid JSON ({err})') from None
    if not isinstance(config, dict) or config.get('format') != FORMAT:
        found = config.get('format') if isinstance(config, dict) else type(config).__name__
        raise ConfigError(f'{config_path} is not a {FORMAT} config (format: {found!r}); a timm backbone folder '
                          '(tools/convert_checkpoint.py backbone) holds no segmentor')
    if config.get('format_version') != FORMAT_VERSION:
        raise ConfigError(f'{config_path} has format_version {config.get("format_version")!r}; this cosub_seg reads '
                          f'version {FORMAT_VERSION}')
    _require(config, ('classes', 'palette', 'preprocessing', 'test_mode', 'files', 'model'), config_path)
    if len(config['palette']) != len(config['classes']):
        raise ConfigError(f'{config_path} has {len(config["classes"])} classes but {len(config["palette"])} palette '
                          'colours')
    return ModelFolder(osp.abspath(path), config)


def test_mode_of(test_cfg: dict, crop_size: Optional[Sequence[int]]) -> dict:
    """The ``test_mode`` entry of config.json from a model's ``test_cfg`` and its training crop: slide inference
    uses the config's crop and stride, else the training crop and a stride of two thirds of it (mmseg's 512 / 341)."""
    mode = test_cfg.get('mode', 'whole')
    crop = test_cfg.get('crop_size') or crop_size
    if crop is None:
        raise ConfigError('the model has neither test_cfg.crop_size nor data_preprocessor.size: no crop for slide '
                          'inference')
    crop = [int(c) for c in (crop if isinstance(crop, (list, tuple)) else (crop, crop))]
    stride = test_cfg.get('stride') or [max(1, (2 * c) // 3) for c in crop]
    stride = [int(s) for s in (stride if isinstance(stride, (list, tuple)) else (stride, stride))]
    return dict(mode=mode, crop_size=crop, stride=stride)


def _plain(value):
    """JSON's view of a config value: tuples as lists, SyncBN as BN (one process, eval mode: the same layer)."""
    if isinstance(value, dict):
        out = {k: _plain(v) for k, v in value.items()}
        if out.get('type') == 'SyncBN':
            out['type'] = 'BN'
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tta_of(tta_pipeline) -> dict:
    """The scales and flip of a config's ``tta_pipeline`` (mmseg's TestTimeAug with Resize(scale_factor=r) and
    RandomFlip), default: scales 0.75 / 1.0 / 1.25 without flips."""
    scales, flip = [], False

    def walk(item):
        nonlocal flip
        if isinstance(item, dict):
            if item.get('type') == 'Resize' and item.get('scale_factor') is not None:
                scales.append(float(item['scale_factor']))
            if item.get('type') == 'RandomFlip' and item.get('prob', 1.0) > 0:
                flip = True
            for v in item.values():
                walk(v)
        elif isinstance(item, (list, tuple)):
            for v in item:
                walk(v)

    walk(tta_pipeline or [])
    return dict(scales=scales or [0.75, 1.0, 1.25], flip=flip)


def default_palette(num_classes: int) -> List[List[int]]:
    """Distinct colours for classes without a palette (a fixed seed: the same every time)."""
    import random
    rng = random.Random(0)
    return [[rng.randrange(256) for _ in range(3)] for _ in range(num_classes)]


def segmentor_description(model_cfg: dict, classes: Optional[Sequence[str]], palette: Optional[Sequence],
                          tta_pipeline=None, name: str = 'segmentor') -> dict:
    """config.json (without ``files``) of an mmseg segmentor config: the model config with nothing for training
    (no pretrained checkpoint, BN for SyncBN), the architecture's names, classes and palette, the normalisation,
    the test mode and TTA. ``classes`` None is left None (the caller decides)."""
    model = _plain(model_cfg)
    backbone = model.get('backbone') or {}
    if backbone.get('init_cfg') is not None:
        backbone['init_cfg'] = None
    pre = model.get('data_preprocessor') or {}
    head = model.get('decode_head') or {}
    num_classes = head.get('num_classes')
    classes = list(classes) if classes is not None else None
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise ConfigError(f'{len(classes)} class names for a decode head of {num_classes} classes')
    palette = [list(map(int, c)) for c in palette] if palette else (
        default_palette(len(classes)) if classes else None)
    return dict(
        format=FORMAT, format_version=FORMAT_VERSION, name=name, library_name='cosub_seg',
        architecture=dict(type=model.get('type'), backbone=backbone.get('arch', backbone.get('type')),
                          neck=(model.get('neck') or {}).get('type'), decode_head=head.get('type')),
        num_classes=num_classes, classes=classes, palette=palette,
        id2label={str(i): c for i, c in enumerate(classes or [])},
        preprocessing=dict(channel_order='RGB' if pre.get('bgr_to_rgb', True) else 'BGR',
                           mean=[float(m) for m in pre.get('mean', (123.675, 116.28, 103.53))],
                           std=[float(s) for s in pre.get('std', (58.395, 57.12, 57.375))],
                           input='uint8 0-255, normalised (x - mean) / std, NCHW float32'),
        test_mode=test_mode_of(model.get('test_cfg') or {}, pre.get('size')),
        tta=_tta_of(tta_pipeline),
        label_files=dict(offset=LABEL_OFFSET, convention=LABEL_CONVENTION),
        model=model, files={})


def model_card(config: dict) -> str:
    """README.md of the folder: Hub metadata (library, task, tags) and how to use the files."""
    classes = ', '.join(config['classes'][:20]) + (' ...' if len(config['classes']) > 20 else '')
    arch = config['architecture']
    return f"""---
library_name: cosub_seg
pipeline_tag: image-segmentation
tags:
- semantic-segmentation
- upernet
- cosub
- {arch['backbone']}
---

# {config.get('name', 'segmentor')}

{arch['type']} ({arch['decode_head']} on the timm backbone `{arch['backbone']}`), fine-tuned with cosub_seg,
{len(config['classes'])} classes: {classes}.

```python
from cosub_seg import Segmenter
segmenter = Segmenter.from_pretrained('path/to/this/folder')   # model.onnx with ONNX Runtime when present
prediction = segmenter.predict('image.jpg')                      # .labels: (H, W) class indices
```

or `python tools/segment.py path/to/this/folder IMAGE_OR_FOLDER_OR_VIDEO --out DIR --overlay`.
Label files: {LABEL_CONVENTION}.
Test mode: {config['test_mode']['mode']} (crop {config['test_mode']['crop_size']}).
Files: `config.json` (this description), `model.safetensors` (PyTorch weights, built through mmseg),
`model.onnx` when exported (`python tools/convert_checkpoint.py onnx FOLDER`; needs only onnxruntime and numpy).
"""


def write_config(path: str, config: dict) -> str:
    """Writes ``path/config.json`` (sorted keys, indented) and the model card; returns the config's path."""
    config_path = osp.join(path, CONFIG_NAME)
    tmp = config_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    os.replace(tmp, config_path)
    with open(osp.join(path, CARD_NAME), 'w') as f:
        f.write(model_card(config))
    return config_path


__all__ = ['CONFIG_NAME', 'WEIGHTS_NAME', 'ONNX_NAME', 'CARD_NAME', 'FORMAT', 'FORMAT_VERSION', 'LABEL_OFFSET',
           'LABEL_CONVENTION', 'ModelFolder', 'read_model_folder', 'write_config', 'file_digest', 'test_mode_of',
           'model_card', 'segmentor_description', 'default_palette']
