"""Digits as coloured ink on a coloured ground: the shared rendering functions (smooth grounds, ink coverage,
painting) and the pretraining augmentation that repaints digits on such grounds.

scikit-learn's digits are light strokes on a black ground. The digit scenes (``digit_scenes.py``) now paint light
gray ink on a dark smooth ground at the pretraining's size (issue 13). :class:`RandomInkOnGround` is the transform of
the issue's diagnosis, when the scenes painted light or dark ink on any ground: a classifier pretrained only on
light-on-black digits did not read those (93.9 % top-1 on the val digits as pretrained, 16.9 % inverted, 33.9 % /
16.7 % as light / dark ink on scene grounds), and the transform repaints pretraining digits that way (and zooms
them out) before the rest of the augmentation. ``bench/digits_diagnosis.py`` uses these functions.
"""
import random
from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from ..errors import ConfigError
from ..registry import TRANSFORMS

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 weights of R, G, B


def smooth_ground(rng: np.random.RandomState, height: int, width: Optional[int] = None) -> np.ndarray:
    """An RGB float32 ground in [0, 255]: a bilinear gradient between four random corner colours plus smooth
    low-frequency noise (8 x 8 values, bicubic), different for every draw."""
    width = height if width is None else width
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy[..., None] / height, xx[..., None] / width
    corners = rng.uniform(0, 255, size=(4, 3)).astype(np.float32)
    top = corners[0] * (1 - xx) + corners[1] * xx
    bottom = corners[2] * (1 - xx) + corners[3] * xx
    noise = cv2.resize(rng.uniform(-25, 25, size=(8, 8, 3)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    return np.clip(top * (1 - yy) + bottom * yy + noise, 0, 255)


def ink_coverage(gray: np.ndarray) -> np.ndarray:
    """Ink coverage in [0, 1] from a digit's intensity in [0, 1] (light strokes): a contrast stretch that makes the
    strokes solid and leaves a thin anti-aliased rim."""
    return np.clip((gray.astype(np.float32) - 0.25) / 0.4, 0, 1)


def contrasting_colour(rng: np.random.RandomState, ground: np.ndarray) -> np.ndarray:
    """A random RGB colour whose luminance is far from the mean of ``ground`` (H, W, 3): dark (0-60) on a light
    ground, light (195-255) on a dark one."""
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    luminance = float(ground.reshape(-1, 3).mean(0) @ LUMA)
    target = rng.uniform(0, 60) if luminance > 128 else rng.uniform(195, 255)
    return np.clip(colour + (target - float(colour @ LUMA)), 0, 255)


def paint(ground: np.ndarray, ink: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``ground`` (H, W, 3) with ``colour`` laid on where ``ink`` (H, W) in [0, 1] covers it."""
    return ground * (1 - ink[..., None]) + colour * ink[..., None]


@TRANSFORMS.register_module()
class RandomInkOnGround(BaseTransform):
    """Repaints a light-on-dark digit as coloured ink on a smooth coloured ground, as the digit scenes draw digits.

    With probability ``prob`` the image's ink (its gray level, contrast-stretched by :func:`ink_coverage`) is first
    shrunk by a factor drawn from ``scale`` and placed at a random position (a zoom-out: the scenes' digits are
    smaller than the 32-pixel view as often as larger), then painted in a colour contrasting with a random ground
    (:func:`smooth_ground`, :func:`contrasting_colour`): light on dark or dark on light, about equally often. The
    other images pass unchanged. Images are OpenCV BGR uint8; randomness comes from Python's ``random`` (seeded per
    worker by the runner), as in the other transforms.

    Args:
        prob: chance that an image is repainted.
        scale: range of the digit's size after the zoom-out, as a fraction of the image side; (1, 1) repaints
            without zooming.
    """

    def __init__(self, prob: float = 0.8, scale: Tuple[float, float] = (0.6, 1.0)):
        if not 0 <= prob <= 1:
            raise ConfigError(f'RandomInkOnGround: prob must be in [0, 1], got {prob}')
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f'RandomInkOnGround: scale must satisfy 0 < min <= max <= 1, got {scale}')
        self.prob = prob
        self.scale = (float(scale[0]), float(scale[1]))

    def transform(self, results: dict) -> dict:
        if random.random() >= self.prob:
            return results
        img = results['img']
        height, width = img.shape[:2]
        gray = img.astype(np.float32).mean(axis=2) / 255.0 if img.ndim == 3 else img.astype(np.float32) / 255.0
        ink = ink_coverage(gray)
        factor = random.uniform(*self.scale)
        if factor < 1:
            h, w = max(1, int(round(height * factor))), max(1, int(round(width * factor)))
            small = cv2.resize(ink, (w, h), interpolation=cv2.INTER_AREA)
            top, left = random.randint(0, height - h), random.randint(0, width - w)
            ink = np.zeros_like(ink)
            ink[top:top + h, left:left + w] = small
        rng = np.random.RandomState(random.getrandbits(32))
        ground = smooth_ground(rng, height, width)
        rgb = paint(ground, ink, contrasting_colour(rng, ground))
        results['img'] = np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)[..., ::-1])
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(prob={self.prob}, scale={self.scale})'
