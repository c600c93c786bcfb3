"""Classification transforms for the DeiT III recipes, on OpenCV (BGR, HWC, uint8) images.

The 3-Augment of DeiT III (Touvron et al., ECCV 2022, https://arxiv.org/abs/2204.07118) is composed in the configs
from mmcv's ``RandomChoice`` and ``RandomGrayscale`` and the ``Solarize``, ``GaussianBlur`` and ``ColorJitter``
below; geometry uses ``RandomResizedCrop`` or ``ResizeShortSide`` + ``RandomCrop`` + mmcv's ``RandomFlip``. The
fine-tuning recipes add timm's RandAugment (``TimmRandAugment``), as DeiT III's ``--aa rand-m9-mstd0.5-inc1``.
"""
import math
import random
from typing import Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from ..errors import ConfigError
from ..registry import TRANSFORMS


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Crops a random area and aspect ratio, then resizes it to ``size`` (Inception-style; torchvision's sampling).

    Args:
        size: output (h, w), or one int for a square.
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio w / h (sampled log-uniformly).
        interpolation: mmcv interpolation ('bilinear', 'bicubic', ...).
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation: str = 'bicubic'):
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ConfigError(f'scale must satisfy 0 < min <= max <= 1, got {scale}')
        if not (0 < ratio[0] <= ratio[1]):
            raise ConfigError(f'ratio must satisfy 0 < min <= max, got {ratio}')
        self.size = _pair(size)
        self.scale = scale
        self.ratio = ratio
        self.interpolation = interpolation

    def _crop_box(self, height: int, width: int) -> Tuple[int, int, int, int]:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * random.uniform(*self.scale)
            aspect = math.exp(random.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = random.randint(0, height - h)
                left = random.randint(0, width - w)
                return top, left, h, w
        # Fallback: the largest centred crop whose aspect ratio is within range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def transform(self, results: dict) -> dict:
        img = results['img']
        top, left, h, w = self._crop_box(*img.shape[:2])
        img = img[top:top + h, left:left + w]
        results['img'] = mmcv.imresize(img, (self.size[1], self.size[0]), interpolation=self.interpolation)
        results['img_shape'] = results['img'].shape[:2]
        return results


@TRANSFORMS.register_module()
class ResizeShortSide(BaseTransform):
    """Resizes the image so that its short side is ``size``, keeping the aspect ratio."""

    def __init__(self, size: int, interpolation: str = 'bicubic'):
        self.size = size
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        scale = self.size / min(h, w)
        new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        results['img'] = mmcv.imresize(img, (new_w, new_h), interpolation=self.interpolation)
        results['img_shape'] = results['img'].shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Pads every border by ``padding`` (reflecting by default), then crops ``size`` at a random place."""

    def __init__(self, size, padding: int = 0, padding_mode: str = 'reflect'):
        self.size = _pair(size)
        self.padding = padding
        self.padding_mode = padding_mode

    def transform(self, results: dict) -> dict:
        img = results['img']
        if self.padding:
            img = mmcv.impad(img, padding=self.padding, padding_mode=self.padding_mode)
        h, w = img.shape[:2]
        th, tw = self.size
        if h < th or w < tw:
            raise ConfigError(f'RandomCrop of {self.size} does not fit an image of {(h, w)} after padding '
                              f'({results.get("img_path", "")}); resize it first')
        top, left = random.randint(0, h - th), random.randint(0, w - tw)
        results['img'] = img[top:top + th, left:left + tw]
        results['img_shape'] = (th, tw)
        return results


@TRANSFORMS.register_module()
class Solarize(BaseTransform):
    """Inverts every pixel value at or above ``thr`` (PIL's ``ImageOps.solarize``)."""

    def __init__(self, thr: int = 128):
        self.thr = thr

    def transform(self, results: dict) -> dict:
        results['img'] = mmcv.solarize(results['img'], thr=self.thr)
        return results


@TRANSFORMS.register_module()
class GaussianBlur(BaseTransform):
    """Blurs with a Gaussian of standard deviation drawn uniformly from ``sigma`` (in pixels)."""

    def __init__(self, sigma: Tuple[float, float] = (0.1, 2.0)):
        self.sigma = sigma

    def transform(self, results: dict) -> dict:
        sigma = random.uniform(*self.sigma)
        results['img'] = cv2.GaussianBlur(results['img'], ksize=(0, 0), sigmaX=sigma, sigmaY=sigma)
        return results


@TRANSFORMS.register_module()
class ColorJitter(BaseTransform):
    """Random brightness, contrast and saturation changes in random order (torchvision's ``ColorJitter`` without
    hue): each factor is drawn uniformly from ``[1 - s, 1 + s]``."""

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3):
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def transform(self, results: dict) -> dict:
        img = results['img']
        ops = [(mmcv.adjust_brightness, self.brightness), (mmcv.adjust_contrast, self.contrast),
               (lambda im, f: mmcv.adjust_color(im, alpha=f), self.saturation)]
        random.shuffle(ops)
        for op, strength in ops:
            if strength > 0:
                img = op(img, random.uniform(max(0.0, 1 - strength), 1 + strength))
        results['img'] = img.astype(np.uint8) if img.dtype != np.uint8 else img
        return results


@TRANSFORMS.register_module()
class TimmRandAugment(BaseTransform):
    """timm's RandAugment (``timm.data.rand_augment_transform``) on an OpenCV image, with the settings timm's
    ``create_transform`` gives it, as DeiT III's fine-tuning (``--aa rand-m9-mstd0.5-inc1``) runs it: translations up
    to 45 % of ``img_size``, the ImageNet mean pixel as fill, bicubic resampling.

    Args:
        policy: timm's RandAugment string, e.g. ``'rand-m9-mstd0.5-inc1'`` (magnitude 9, magnitude noise 0.5,
            magnitudes that increase the distortion).
        img_size: the crop size the transform runs at (it comes after the crop).
        mean: the fill colour, RGB in [0, 1].
        interpolation: PIL resampling of the geometric operations ('bicubic' or 'bilinear').
    """

    def __init__(self, policy: str = 'rand-m9-mstd0.5-inc1', img_size: int = 224,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), interpolation: str = 'bicubic'):
        from timm.data.auto_augment import rand_augment_transform
        from timm.data.transforms import str_to_pil_interp
        if not policy.startswith('rand'):
            raise ConfigError(f"TimmRandAugment takes a RandAugment policy starting with 'rand', got {policy!r}")
        self.policy = policy
        hparams = dict(translate_const=int(img_size * 0.45), img_mean=tuple(min(255, round(255 * m)) for m in mean),
                       interpolation=str_to_pil_interp(interpolation))
        self.augment = rand_augment_transform(policy, hparams)

    def transform(self, results: dict) -> dict:
        from PIL import Image
        img = results['img']
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        rgb = Image.fromarray(np.ascontiguousarray(img[..., ::-1]))
        results['img'] = np.ascontiguousarray(np.asarray(self.augment(rgb))[..., ::-1])
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(policy={self.policy!r})'


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """Packs an image and its label into ``dict(inputs=CHW uint8 tensor, data_samples=BaseDataElement)``."""

    meta_keys = ('img_path', 'ori_shape', 'img_shape')

    def transform(self, results: dict) -> dict:
        img = np.ascontiguousarray(results['img'])
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(img.transpose(2, 0, 1).copy())
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt_label' in results:
            sample.gt_label = torch.tensor([results['gt_label']], dtype=torch.long)
        return dict(inputs=inputs, data_samples=sample)
