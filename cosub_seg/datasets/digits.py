"""The embedded default dataset: scikit-learn's 1,797 real handwritten digits as an ImageNet-style folder."""
import os
import os.path as osp
from typing import Dict

import cv2
import numpy as np

from ..progress import ThrottledProgressBar

DIGIT_CLASSES = tuple(str(i) for i in range(10))


def load_digit_split(val_fraction: float = 0.2, seed: int = 0) -> Dict[str, np.ndarray]:
    """The digits (N, 8, 8) in [0, 16], their labels and a fixed stratified split into train and val indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train_idx, val_idx = train_test_split(
        index, test_size=val_fraction, stratify=digits.target, random_state=seed)
    return dict(images=digits.images, labels=digits.target, train=np.sort(train_idx), val=np.sort(val_idx))


def digit_to_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 digit in [0, 16] as a ``size`` x ``size`` 3-channel uint8 image (bicubic upsampling)."""
    gray = np.clip(image.astype(np.float32) * (255.0 / 16.0), 0, 255)
    gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC)
    gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def write_digits(out_dir: str, size: int = 32, val_fraction: float = 0.2, seed: int = 0,
                 progress: bool = False) -> Dict[str, int]:
    """Writes ``out_dir/{train,val}/<digit>/<index>.png``, ``out_dir/meta/{train,val}.txt`` and ``classes.txt``.

    The split is stratified and fixed by ``seed``; file names are the digit's index in scikit-learn's array, so two
    runs write the same files. ``progress`` shows a progress bar (count, speed, ETA). Returns the number of images
    per split.
    """
    split = load_digit_split(val_fraction, seed)
    bar = ThrottledProgressBar(len(split['train']) + len(split['val'])) if progress else None
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    with open(osp.join(out_dir, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(DIGIT_CLASSES) + '\n')
    counts = {}
    for name in ('train', 'val'):
        lines = []
        for i in split[name]:
            label = int(split['labels'][i])
            rel = f'{label}/{i:04d}.png'
            path = osp.join(out_dir, name, rel)
            os.makedirs(osp.dirname(path), exist_ok=True)
            if not cv2.imwrite(path, digit_to_rgb(split['images'][i], size)):
                raise OSError(f'could not write {path}')
            lines.append(f'{rel} {label}\n')
            if bar:
                bar.update()
        with open(osp.join(out_dir, 'meta', f'{name}.txt'), 'w') as f:
            f.writelines(lines)
        counts[name] = len(lines)
    if bar:
        print()
    return counts
