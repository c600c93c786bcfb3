"""``Segmenter``: a fine-tuned segmentor as a function from images to class maps, without the training stack.

Two backends behind one API:

* ``onnx``: ``model.onnx`` of a model folder run by ONNX Runtime. Needs numpy, onnxruntime, OpenCV (and Pillow
  for the image checks): no torch, mmcv, mmseg or MMEngine is imported. Slide inference and test-time augmentation
  run around the graph in numpy.
* ``torch``: ``model.safetensors`` (or an mmseg ``<config>.py`` + ``.pth`` pair) in the segmentor PyTorch builds
  **through mmseg's registry** (the training stack: torch, timm, mmcv, mmseg, imported on this path only); the
  logits come from the model's own ``inference`` (whole or slide), so a class map equals mmseg's
  ``inference_model`` on the same image.

Images are RGB (file paths are decoded as mmseg decodes them, see :mod:`cosub_seg.inference.images`); every result
has the input's size.
"""
import os
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import ConfigError, DataError, MissingFileError, MissingPackageError
from .images import as_rgb, colour_labels, label_image, overlay, read_image
from ..windows import slide_windows
from .model_folder import ONNX_NAME, WEIGHTS_NAME, read_model_folder, segmentor_description



@dataclass
class Prediction:
    """One image's result: ``labels`` (H, W) class indices into ``classes``; ``probabilities`` (C, H, W) softmax
    (averaged over the augmented copies with ``tta``) when asked for."""

    labels: np.ndarray
    classes: List[str] = field(repr=False)
    palette: List[List[int]] = field(repr=False)
    probabilities: Optional[np.ndarray] = field(default=None, repr=False)
    source: Optional[str] = None

    def label_png(self) -> np.ndarray:
        """The pixels of the label file: ADE20k's convention, class i as i + 1, 0 = unlabeled."""
        return label_image(self.labels)

    def colours(self) -> np.ndarray:
        """(H, W, 3) RGB: the class map in the palette's colours."""
        return colour_labels(self.labels, self.palette)

    def overlay(self, image: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The RGB ``image`` with the class colours blended in."""
        return overlay(image, self.labels, self.palette, alpha)


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    return shifted / shifted.sum(axis=axis, keepdims=True)


def resize_maps(maps: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(C, h, w) float maps to (C, H, W), bilinear with half-pixel centres (torch's ``align_corners=False``)."""
    if maps.shape[1:] == tuple(size):
        return maps
    out = np.empty((maps.shape[0], *size), np.float32)
    for start in range(0, maps.shape[0], 512):  # OpenCV takes at most 512 channels
        part = np.ascontiguousarray(maps[start:start + 512].transpose(1, 2, 0))
        resized = cv2.resize(part, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        out[start:start + 512] = resized.reshape(size[0], size[1], -1).transpose(2, 0, 1)
    return out


class OnnxBackend:
    """``model.onnx`` in an ONNX Runtime session: (N, 3, H, W) normalised float32 -> (N, C, H, W) logits."""

    name = 'onnx'

    def __init__(self, path: str, entry: dict, device: str = 'cpu', threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingPackageError("the ONNX backend needs onnxruntime: pip install 'cosub_seg[infer]' (or "
                                      "onnxruntime-gpu for CUDA)") from None
        providers = ['CPUExecutionProvider']
        if device.startswith('cuda'):
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise MissingPackageError(f'device={device!r} with the ONNX backend needs onnxruntime-gpu (this '
                                          f'onnxruntime offers {ort.get_available_providers()}); or use '
                                          "backend='torch'")
            index = int(device.split(':')[1]) if ':' in device else 0
            providers = [('CUDAExecutionProvider', dict(device_id=index)), 'CPUExecutionProvider']
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        self.input_name = entry.get('input', self.session.get_inputs()[0].name)
        self.dynamic_size = bool(entry.get('dynamic_size'))
        self.static_size = tuple(entry['static_size']) if entry.get('static_size') else None
        self.size_multiple = tuple(entry['size_multiple']) if entry.get('size_multiple') else None
        self.path = path

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(inputs, np.float32)})[0]


def size_multiple(model) -> Optional[list]:
    """(h, w) an input's height and width must be multiples of, where the PyTorch segmentor refuses other sizes:
    timm's ``PatchEmbed`` without padding asserts it (ViT / DeiT III, Swin); None where any size runs. The ONNX graph
    has no assertion (its convolution would floor), so config.json records it and the Segmenter refuses such an image
    in whole mode on both backends."""
    embed = getattr(getattr(getattr(model, 'backbone', None), 'model', None), 'patch_embed', None)
    if embed is None or not hasattr(embed, 'dynamic_img_pad') or embed.dynamic_img_pad:
        return None
    return [int(p) for p in embed.patch_size]


class TorchBackend:
    """The segmentor in PyTorch, built through mmseg's registry: its own whole / slide ``inference``."""

    name = 'torch'

    def __init__(self, model, device: str = 'cpu', precision: str = 'fp32'):
        import torch
        if precision not in ('fp32', 'bf16', 'fp16'):
            raise ConfigError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        multiple = size_multiple(model)
        self.size_multiple = tuple(multiple) if multiple else None

    def run_model(self, inputs: np.ndarray, test_mode: dict) -> np.ndarray:
        """(N, 3, H, W) normalised float32 -> (N, C, H, W) float32 logits by the model's ``inference``."""
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(inputs)).to(self.device)
        shape = tuple(x.shape[2:])
        metas = [dict(img_shape=shape, ori_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])
                 for _ in range(x.shape[0])]
        from mmengine.config import ConfigDict
        saved = self.model.test_cfg
        self.model.test_cfg = ConfigDict(dict(saved or {}, **test_mode))
        try:
            with torch.no_grad(), torch.autocast(self.device.type, dtype=getattr(torch, dict(
                    bf16='bfloat16', fp16='float16').get(self.precision, 'float32')),
                    enabled=self.precision != 'fp32'):
                logits = self.model.inference(x, metas)
        finally:
            self.model.test_cfg = saved
        return logits.float().cpu().numpy()


def _normalise(batch: np.ndarray, mean: np.ndarray, std: np.ndarray, rgb: bool) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32, as mmseg's data preprocessor computes it."""
    x = batch.transpose(0, 3, 1, 2)
    if not rgb:
        x = x[:, ::-1]
    return (x.astype(np.float32) - mean) / std


class Segmenter:
    """Class maps of images from an exported segmentor (see the module's docstring for the two backends).

    Build it with :meth:`from_pretrained`; call :meth:`predict`.
    """

    def __init__(self, backend, description: dict, source: str):
        self.backend = backend
        self.description = description
        self.source = source
        self.classes: List[str] = list(description['classes'])
        self.palette: List[List[int]] = [list(c) for c in description['palette']]
        pre = description['preprocessing']
        self._mean = np.asarray(pre['mean'], np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(pre['std'], np.float32).reshape(1, 3, 1, 1)
        self._rgb = pre.get('channel_order', 'RGB') == 'RGB'
        self.test_mode = dict(description['test_mode'])
        self.tta = dict(description.get('tta') or dict(scales=[0.75, 1.0, 1.25], flip=False))
        self._warned_static = False

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path: str, device: str = 'cpu', backend: str = 'auto', precision: str = 'fp32',
                        config: Optional[str] = None, verify: bool = True,
                        threads: Optional[int] = None) -> 'Segmenter':
        """A Segmenter from

        * a model folder (``config.json`` + ``model.safetensors`` [+ ``model.onnx``]), or one of its files;
        * an ``.onnx`` file with the folder's ``config.json`` beside it;
        * an mmseg checkpoint ``X.pth`` with its config (``config=``, default ``X.py`` beside it: what
          ``tools/convert_checkpoint.py segmentor`` writes; a ``tools/train_seg.py`` checkpoint with its config).

        Args:
            device: 'cpu', 'cuda' or 'cuda:N'.
            backend: 'onnx' (ONNX Runtime; no torch, mmcv, mmseg), 'torch' (built through mmseg), or 'auto': the
                ONNX model when the folder has one and onnxruntime is installed, else torch.
            precision: the torch backend's autocast: 'fp32', 'bf16' or 'fp16'.
            verify: check the weights files against the checksums of config.json.
            threads: ONNX Runtime's intra-op threads (default: its own choice).
        """
        path = os.fspath(path)
        if backend not in ('auto', 'onnx', 'torch'):
            raise ConfigError(f"backend must be 'auto', 'onnx' or 'torch', got {backend!r}")
        if not osp.exists(path):
            raise MissingFileError(f'{path} does not exist: give a model folder (config.json + model.safetensors '
                                   '[+ model.onnx]), a model.onnx, or an mmseg .pth with its config')
        if path.endswith('.pth'):
            if backend == 'onnx':
                raise ConfigError(f'{path} is a PyTorch checkpoint: the ONNX backend takes a model folder with '
                                  'model.onnx (python tools/convert_checkpoint.py onnx)')
            return cls._from_mmseg_checkpoint(path, config, device, precision)
        folder_path = path if osp.isdir(path) else osp.dirname(osp.abspath(path))
        folder = read_model_folder(folder_path)
        if path.endswith('.onnx') and backend == 'auto':
            backend = 'onnx'
        elif path.endswith('.safetensors') and backend == 'auto':
            backend = 'torch'
        if backend == 'auto':
            backend = 'onnx' if folder.onnx is not None and osp.isfile(osp.join(folder.path, ONNX_NAME)) \
                and _has_onnxruntime() and (device == 'cpu' or _onnx_has_cuda()) else 'torch'
        if backend == 'onnx':
            if folder.onnx is None:
                raise MissingFileError(f'{osp.join(folder.path, ONNX_NAME)}: the model folder has no ONNX export; '
                                       f'write it with `python tools/convert_checkpoint.py onnx {folder.path}`')
            onnx_path = folder.file(ONNX_NAME, verify=verify)
            return cls(OnnxBackend(onnx_path, folder.onnx, device, threads), folder.config, onnx_path)
        weights = folder.file(WEIGHTS_NAME, verify=verify)
        model = build_torch_segmentor(folder.config['model'], weights)
        return cls(TorchBackend(model, device, precision), folder.config, weights)

    @classmethod
    def _from_mmseg_checkpoint(cls, checkpoint: str, config: Optional[str], device: str, precision: str):
        config = config or osp.splitext(checkpoint)[0] + '.py'
        if not osp.isfile(config):
            raise MissingFileError(f'{config} does not exist: a .pth needs its config (config=PATH), e.g. the '
                                   '<name>.py tools/convert_checkpoint.py segmentor writes beside <name>.pth')
        from mmengine.config import Config

        from ..checkpoint import extract_state_dict, load_checkpoint_file
        cfg = Config.fromfile(config)
        ckpt = load_checkpoint_file(checkpoint)
        meta = (ckpt.get('meta') or {}).get('dataset_meta') or {}
        description = segmentor_description(cfg.model.to_dict(), meta.get('classes'), meta.get('palette'),
                                            cfg.get('tta_pipeline'), osp.splitext(osp.basename(config))[0])
        if description['classes'] is None:
            raise ConfigError(f'{checkpoint} has no meta.dataset_meta.classes: export it with `python '
                              'tools/convert_checkpoint.py segmentor CONFIG CHECKPOINT FOLDER` (it adds them)')
        model = build_torch_segmentor(description['model'], None)
        load_state(model, extract_state_dict(ckpt, checkpoint), checkpoint)
        return cls(TorchBackend(model, device, precision), description, checkpoint)

    # ------------------------------------------------------------------------------------------------ predicting

    def predict(self, images, mode: Optional[str] = None, tta: bool = False, probabilities: bool = False,
                batch_size: int = 8) -> Union[Prediction, List[Prediction]]:
        """Class maps at the size of each input.

        Args:
            images: an image file path, an (H, W, 3) uint8 RGB array (or a PIL image), or a list of them.
            mode: 'whole' (the image in one forward) or 'slide' (overlapping crops of the model's crop size,
                their logits averaged); default: the model's test mode.
            tta: average the softmax over the scales (and flips) of the model's TTA (config.json ``tta``).
            probabilities: also return the (C, H, W) softmax.
            batch_size: images per forward (same-size images are batched together).

        Returns:
            One :class:`Prediction` for one input, a list for a list.
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        arrays, sources = [], []
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                arrays.append(read_image(str(item)))
                sources.append(str(item))
            else:
                arrays.append(as_rgb(item, f'image {i}'))
                sources.append(None)
        results: List[Optional[Prediction]] = [None] * len(arrays)
        # Same-size images share a forward; the order of the results is the order of the inputs.
        by_size: dict = {}
        for i, array in enumerate(arrays):
            by_size.setdefault(array.shape[:2], []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), max(1, batch_size)):
                chunk = indices[start:start + max(1, batch_size)]
                batch = np.stack([arrays[i] for i in chunk])
                scores = self._tta_probabilities(batch, mode) if tta else self.logits(batch, mode)
                for j, i in enumerate(chunk):
                    results[i] = Prediction(
                        labels=scores[j].argmax(axis=0), classes=self.classes, palette=self.palette,
                        probabilities=(scores[j] if tta else softmax(scores[j:j + 1])[0]) if probabilities else None,
                        source=sources[i])
        return results[0] if single else results

    def logits(self, batch: np.ndarray, mode: Optional[str] = None) -> np.ndarray:
        """(N, C, H, W) float32 logits of an (N, H, W, 3) uint8 RGB batch of one size."""
        mode = mode or self.test_mode['mode']
        if mode not in ('whole', 'slide'):
            raise ConfigError(f"mode must be 'whole' or 'slide', got {mode!r}")
        x = _normalise(np.asarray(batch), self._mean, self._std, self._rgb)
        test_mode = dict(self.test_mode, mode=mode)
        multiple = self.backend.size_multiple
        if mode == 'whole' and multiple and (x.shape[2] % multiple[0] or x.shape[3] % multiple[1]):
            raise DataError(f'a {x.shape[2]}x{x.shape[3]} image cannot run as a whole through {self.source}: its '
                            f'height and width must be multiples of {multiple[0]}x{multiple[1]} (the patch size); '
                            f"use mode='slide' (crops of {self.test_mode['crop_size']})")
        if isinstance(self.backend, TorchBackend):
            return self.backend.run_model(x, test_mode)
        static = None if self.backend.dynamic_size else self.backend.static_size
        if mode == 'whole' and static is not None and tuple(x.shape[2:]) != static:
            if not self._warned_static:
                warnings.warn(f'{self.source} was exported for {static[0]}x{static[1]} inputs only (no dynamic size): '
                              f'a {x.shape[2]}x{x.shape[3]} image runs in slide mode', stacklevel=3)
                self._warned_static = True
            mode = 'slide'
        if mode == 'whole':
            try:
                return self.backend.run(x)
            except Exception as err:  # ONNX Runtime's errors: a size the graph cannot take
                if type(err).__module__.split('.')[0] != 'onnxruntime':
                    raise
                problem = ' '.join(str(err).split())[:200]
                raise DataError(f'{self.source} cannot run a {x.shape[2]}x{x.shape[3]} image as a whole (the network '
                                f'may need a multiple of its patch size or stride: {problem}); '
                                f"use mode='slide' (crops of {self.test_mode['crop_size']})") from None
        return self._slide(x, static)

    def _slide(self, x: np.ndarray, static: Optional[Tuple[int, int]], chunk: int = 8) -> np.ndarray:
        """mmseg's slide inference in numpy: the crops in mmseg's order, ``chunk`` windows per run, their logits
        summed into place and divided by the visit count. A graph of a fixed size gets each crop padded to it (at
        the normalised zero, the mean colour) where the image is smaller than the crop."""
        n, _, height, width = x.shape
        crop = tuple(self.test_mode['crop_size'])
        windows = slide_windows(height, width, crop, self.test_mode['stride'])
        preds = count = None
        for start in range(0, len(windows), chunk):
            group = windows[start:start + chunk]
            crops = [x[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in group]
            if static is not None:
                crops = [np.pad(c, ((0, 0), (0, 0), (0, static[0] - c.shape[2]), (0, static[1] - c.shape[3])))
                         for c in crops]
            logits = self.backend.run(np.concatenate(crops))
            if preds is None:
                preds = np.zeros((n, logits.shape[1], height, width), np.float32)
                count = np.zeros((n, 1, height, width), np.float32)
            for i, (y1, y2, x1, x2) in enumerate(group):
                preds[:, :, y1:y2, x1:x2] += logits[i * n:(i + 1) * n, :, :y2 - y1, :x2 - x1]
                count[:, :, y1:y2, x1:x2] += 1
        return preds / count

    def _tta_probabilities(self, batch: np.ndarray, mode: Optional[str]) -> np.ndarray:
        """mmseg's SegTTAModel: the logits of every scale (and flip) resized back to the input (bilinear), their
        softmax averaged."""
        n, height, width = batch.shape[:3]
        total, copies = None, 0
        for scale in self.tta.get('scales') or [1.0]:
            size = (int(width * scale + 0.5), int(height * scale + 0.5))  # mmcv's rescale_size
            scaled = batch if size == (width, height) else np.stack(
                [cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in batch])
            for flip in ((False, True) if self.tta.get('flip') else (False, )):
                logits = self.logits(np.ascontiguousarray(scaled[:, :, ::-1]) if flip else scaled, mode)
                if flip:
                    logits = logits[:, :, :, ::-1]
                logits = np.stack([resize_maps(np.ascontiguousarray(maps), (height, width)) for maps in logits])
                probs = softmax(logits)
                total = probs if total is None else total + probs
                copies += 1
        return total / copies


def backend_agreement(model: str, images: Sequence[str], mode: Optional[str] = None,
                      threads: Optional[int] = None) -> dict:
    """How far ONNX Runtime is from PyTorch on ``images`` (file paths): ``model`` (a model folder with model.onnx)
    loaded by both backends, each image run alone by :meth:`Segmenter.logits` in the model's test mode (or
    ``mode``). Returns ``max_abs_diff`` (the logits' largest absolute difference), ``max_abs_diff_probabilities``
    (of their softmax), ``pixel_agreement`` (the fraction of pixels whose class, the argmax, is the same),
    ``pixels``, ``differing_pixels``, the same per image in ``per_image``, and ``mode``. Imports the training stack
    (the torch backend)."""
    images = [os.fspath(path) for path in images]
    if not images:
        raise DataError('backend_agreement: no image to compare the backends on')
    onnx = Segmenter.from_pretrained(model, backend='onnx', threads=threads)
    reference = Segmenter.from_pretrained(model, backend='torch')
    mode = mode or onnx.test_mode['mode']
    rows = []
    for path in images:
        batch = read_image(path)[None]
        expected, got = reference.logits(batch, mode), onnx.logits(batch, mode)
        same = got.argmax(axis=1) == expected.argmax(axis=1)
        rows.append(dict(image=path, max_abs_diff=float(np.abs(got - expected).max()),
                         max_abs_diff_probabilities=float(np.abs(softmax(got) - softmax(expected)).max()),
                         pixel_agreement=float(same.mean()), pixels=int(same.size),
                         differing_pixels=int(same.size - same.sum())))
    pixels = sum(row['pixels'] for row in rows)
    differing = sum(row['differing_pixels'] for row in rows)
    return dict(backends=['torch', 'onnx'], mode=mode, images=images, pixels=pixels, differing_pixels=differing,
                pixel_agreement=(pixels - differing) / pixels,
                max_abs_diff=max(row['max_abs_diff'] for row in rows),
                max_abs_diff_probabilities=max(row['max_abs_diff_probabilities'] for row in rows), per_image=rows)


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _onnx_has_cuda() -> bool:
    import onnxruntime as ort
    return 'CUDAExecutionProvider' in ort.get_available_providers()


def load_state(model, state: dict, source: str) -> None:
    """Loads ``state`` into ``model`` exactly (every key, every shape), or raises ConfigError naming ``source``."""
    own = model.state_dict()
    missing, unused = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    mismatched = [f'{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model'
                  for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unused or mismatched:
        raise ConfigError(f'{source} does not fit the model its config describes: missing {missing[:6]}, '
                          f'not in the model {unused[:6]}, shapes {mismatched[:4]}; export the folder again')
    model.load_state_dict(state, strict=True)


def build_torch_segmentor(model_cfg: dict, weights: Optional[str]):
    """The segmentor of ``model_cfg`` (an mmseg model config) built through mmseg's registry, in eval mode, with
    the ``model.safetensors`` weights when given. Imports the training stack (torch, timm, mmcv, mmseg)."""
    try:
        from mmengine.config import ConfigDict
        from mmengine.registry import DefaultScope
        from mmseg.registry import MODELS as SEG_MODELS

        from .. import models  # noqa: F401  (registers TimmSegBackbone, CosubEncoderDecoder)
    except ImportError as err:
        raise MissingPackageError(f"the torch backend builds the model through mmseg, which cannot be imported here "
                                  f"({err}); use the ONNX backend (backend='onnx', a folder with model.onnx) or "
                                  'install the training stack (make install)') from None
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(ConfigDict(model_cfg))
    if weights is not None:
        from safetensors.torch import load_file
        load_state(model, load_file(weights), weights)
    return model.eval()


__all__ = ['Segmenter', 'Prediction', 'OnnxBackend', 'TorchBackend', 'slide_windows', 'build_torch_segmentor',
           'load_state', 'softmax', 'resize_maps', 'size_multiple', 'backend_agreement']
