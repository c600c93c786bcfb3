"""digit_scenes: a small segmentation set in ADE20k's layout and label convention, built from real digits.

Each scene is a dark, smoothly textured ground holding two or three of scikit-learn's handwritten digits in light
ink, drawn as the pretraining images draw them (32 pixels high, bicubic) at random places on an 8-pixel grid: the
grid of the demo ViT's patches, so a digit meets the backbone as in pretraining, as ADE20k's objects meet an
ImageNet backbone at the scale it learnt them. (Measured for issue 13, docs/benchmarks.md: off the grid the same
pretrained backbone lost a third of its mIoU, and digits at other sizes or in dark ink on light grounds lost more.)
Annotations follow ADE20k: 0 = unlabeled (mmseg's ``reduce_zero_label`` turns it into the ignore index 255),
1 = background, 2-11 = digits 0-9. A digit's mask is its strokes thickened to the digit's extent (an object mask,
not a stroke mask: stride-8 features cannot resolve thin strokes); the band around it, where a pixel could belong to
either, is labelled 0. Training scenes use only digits of the pretraining train split,
validation scenes only val digits, so fine-tuning never sees a validation digit.
"""
import glob
import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS as SEG_DATASETS

from ..progress import ThrottledProgressBar
from .digits import load_digit_split
from .ink import ink_coverage, paint, smooth_ground

SCENE_CLASSES = ('background', ) + tuple(f'digit {i}' for i in range(10))
# One colour per class for visualisation, in SCENE_CLASSES order.
SCENE_PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                 [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]]
INK_THRESHOLDS = (0.1, 0.5)  # ink coverage up to the first: background, from the second: digit, between: unlabeled
GROUND_BRIGHTNESS = 80 / 255  # the smooth ground's colours are scaled into [0, 80]: a dark ground
INK_BRIGHTNESS = (200, 255)  # light gray ink, as the pretraining digits' strokes


@SEG_DATASETS.register_module()
class DigitScenesDataset(ADE20KDataset):
    """mmseg's ADE20KDataset, unchanged but for the class names (ADE20k's 150 names do not fit 10 digits)."""

    METAINFO = dict(classes=SCENE_CLASSES, palette=SCENE_PALETTE)


def _ink(image: np.ndarray, side: int) -> np.ndarray:
    """A digit's ink coverage in [0, 1] at ``side`` pixels: bicubic upsampling of its [0, 16] values, then
    :func:`ink_coverage`."""
    return ink_coverage(cv2.resize(image.astype(np.float32) / 16.0, (side, side), interpolation=cv2.INTER_CUBIC))


def _free_cells(occupied: np.ndarray, side: int, grid: int) -> List[Tuple[int, int]]:
    """The grid positions (top, left) where a ``side``-pixel digit lies on no occupied pixel."""
    size = occupied.shape[0]
    return [(top, left) for top in range(0, size - side + 1, grid) for left in range(0, size - side + 1, grid)
            if not occupied[top:top + side, left:left + side].any()]


def _scene(rng: np.random.RandomState, images: np.ndarray, labels: np.ndarray, pool: np.ndarray, size: int,
           digits: Tuple[int, int], side: int, grid: int, gap: int) -> Tuple[np.ndarray, np.ndarray]:
    img = smooth_ground(rng, size) * GROUND_BRIGHTNESS
    ann = np.ones((size, size), np.uint8)
    occupied = np.zeros((size, size), bool)
    for _ in range(rng.randint(digits[0], digits[1] + 1)):
        cells = _free_cells(occupied, side, grid)
        if not cells:
            break
        top, left = cells[rng.randint(len(cells))]
        occupied[max(0, top - gap):top + side + gap, max(0, left - gap):left + side + gap] = True
        idx = pool[rng.randint(len(pool))]
        ink = _ink(images[idx], side)
        region = img[top:top + side, left:left + side]
        img[top:top + side, left:left + side] = paint(region, ink, np.full(3, rng.uniform(*INK_BRIGHTNESS)))
        # A digit's label covers its strokes thickened to its extent, as object masks do, and the band around it
        # (where the thin strokes' neighbourhood is ambiguous) is unlabeled.
        radius = max(1, side // 10)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        body = cv2.dilate((ink >= INK_THRESHOLDS[1]).astype(np.uint8), kernel).astype(bool)
        band = cv2.dilate(body.astype(np.uint8), kernel).astype(bool) | (ink > INK_THRESHOLDS[0])
        patch = ann[top:top + side, left:left + side]
        patch[band] = 0
        patch[body] = 2 + labels[idx]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), ann


def write_digit_scenes(out_dir: str, num_train: int = 800, num_val: int = 200, size: int = 96,
                       digits: Tuple[int, int] = (2, 3), digit_size: int = 32, grid: int = 8, gap: int = 0,
                       seed: int = 0, progress: bool = False) -> Dict[str, int]:
    """Writes ``out_dir/images/{training,validation}/*.jpg`` and ``out_dir/annotations/{...}/*.png``.

    Each scene is ``size`` pixels square and holds ``digits`` (a range) digits, fewer where no free place is left,
    each ``digit_size`` pixels high at a position on a ``grid``-pixel grid, at least ``gap`` pixels from the others.
    Deterministic for a given seed. ``progress`` shows a progress bar (count, speed, ETA). Returns the number of
    scenes per split.
    """
    if digit_size > size:
        raise ValueError(f'write_digit_scenes: digit_size {digit_size} does not fit a scene of {size} pixels')
    if not 1 <= digits[0] <= digits[1]:
        raise ValueError(f'write_digit_scenes: digits must be a range (min, max) with 1 <= min <= max, got {digits}')
    split = load_digit_split()
    bar = ThrottledProgressBar(num_train + num_val) if progress else None
    counts = {}
    for name, pool, count, offset in (('training', split['train'], num_train, 0),
                                      ('validation', split['val'], num_val, 1)):
        rng = np.random.RandomState(seed * 2 + offset)
        img_dir = osp.join(out_dir, 'images', name)
        ann_dir = osp.join(out_dir, 'annotations', name)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        # Scenes an earlier version wrote (other counts or sizes) would mix with these: this function's own files go.
        for folder, ext in ((img_dir, 'jpg'), (ann_dir, 'png')):
            for old in glob.glob(osp.join(folder, f'digitscene_{name[:3]}_*.{ext}')):
                os.remove(old)
        for i in range(count):
            img, ann = _scene(rng, split['images'], split['labels'], pool, size, digits, digit_size, grid, gap)
            stem = f'digitscene_{name[:3]}_{i:05d}'
            if not (cv2.imwrite(osp.join(img_dir, stem + '.jpg'), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                    and cv2.imwrite(osp.join(ann_dir, stem + '.png'), ann)):
                raise OSError(f'could not write scene {stem} under {out_dir}')
            if bar:
                bar.update()
        counts[name] = count
    if bar:
        print()
    return counts
