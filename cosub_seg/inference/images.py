"""Images in and out of the inference path, with OpenCV, numpy and Pillow only (no torch, no mmcv).

Images are decoded as mmseg's ``LoadImageFromFile`` does (OpenCV, ``IMREAD_COLOR``: EXIF orientation applied, grey
replicated, alpha dropped, 16 bits scaled to 8), so a prediction equals mmseg's on the same file; Pillow reads the
header first to warn about those conversions and decodes the whole file once to catch a truncated one, which
OpenCV would pad with grey silently.
"""
import io
import os
import os.path as osp
import warnings
from typing import List, Sequence

import cv2
import numpy as np

from ..errors import DataError, MissingFileError
from .model_folder import LABEL_OFFSET

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')
# Pillow modes that are not 8-bit RGB, and what IMREAD_COLOR makes of them.
_CONVERSIONS = {
    'L': 'a grey image, used as RGB (its grey level in every channel)',
    'LA': 'a grey image with alpha: the alpha channel is ignored, the grey level used as RGB',
    'RGBA': 'an RGBA image: the alpha channel is ignored (not composited)',
    'P': 'a palette image, converted to RGB',
    'PA': 'a palette image with alpha: converted to RGB, the alpha ignored',
    'I;16': 'a 16-bit image, scaled to 8 bits (divided by 256)',
    'I;16B': 'a 16-bit image, scaled to 8 bits (divided by 256)',
    'I;16L': 'a 16-bit image, scaled to 8 bits (divided by 256)',
    'I': 'a 32-bit integer image, scaled to 8 bits',
    'F': 'a floating-point image, converted to 8 bits',
    'CMYK': 'a CMYK image, converted to RGB',
    '1': 'a 1-bit image, used as RGB',
}


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'  # then IHDR: length, type, width, height, bit depth (byte 24)


class ImageConversionWarning(UserWarning):
    """An image that is not 8-bit RGB and was converted to it (grey, RGBA, 16-bit...)."""


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the image file ``path``; :class:`DataError` naming the file when it cannot be read or
    is truncated, :class:`ImageConversionWarning` naming it when it is not 8-bit RGB."""
    if not osp.isfile(path):
        raise MissingFileError(f'{path} does not exist')
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise DataError(f'{path} is empty (0 bytes)')
    _check_with_pillow(path, data)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f'{path} cannot be decoded as an image (OpenCV reads no picture from it)')
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _check_with_pillow(path: str, data: bytes) -> None:
    try:
        from PIL import Image
    except ImportError:  # OpenCV alone: truncation and conversions go unnoticed
        return
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            image.load()
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... for broken files
        if type(err).__name__ == 'UnidentifiedImageError':
            if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None:
                return  # a format OpenCV reads and Pillow does not
            raise DataError(f'{path} is not an image file (neither Pillow nor OpenCV can identify it)') from None
        raise DataError(f'{path} is corrupt or truncated: {err}') from None
    if data[:8] == PNG_SIGNATURE and data[24:25] == b'\x10' and not mode.startswith('I'):
        mode = 'I;16'  # a 16-bit colour PNG: Pillow reads it as 8-bit RGB and says nothing
    if mode != 'RGB':
        conversion = _CONVERSIONS.get(mode, f'a {mode} image, converted to RGB')
        warnings.warn(f'{path} is {conversion}', ImageConversionWarning, stacklevel=3)


def as_rgb(image, name: str = 'the image') -> np.ndarray:
    """An array given to ``predict``, checked: (H, W, 3) uint8 RGB (a grey (H, W) array is replicated with a
    warning, an (H, W, 4) one loses its alpha, uint16 is divided by 256)."""
    if hasattr(image, 'convert') and hasattr(image, 'mode'):  # a PIL image
        if image.mode != 'RGB':
            warnings.warn(f'{name} is {_CONVERSIONS.get(image.mode, image.mode)}', ImageConversionWarning,
                          stacklevel=3)
            image = image.convert('RGB')
        return np.asarray(image)
    array = np.asarray(image)
    if array.ndim == 2:
        warnings.warn(f'{name} is {_CONVERSIONS["L"]}', ImageConversionWarning, stacklevel=3)
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DataError(f'{name} has shape {array.shape}; expected (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey')
    if array.shape[2] == 4:
        warnings.warn(f'{name} is {_CONVERSIONS["RGBA"]}', ImageConversionWarning, stacklevel=3)
        array = array[:, :, :3]
    if array.dtype == np.uint16:
        warnings.warn(f'{name} is {_CONVERSIONS["I;16"]}', ImageConversionWarning, stacklevel=3)
        array = (array // 256).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DataError(f'{name} has dtype {array.dtype}; expected uint8 (0-255) or uint16')
    return np.ascontiguousarray(array)


def list_images(folder: str) -> List[str]:
    """The image files under ``folder``, recursively, sorted; :class:`DataError` naming the folder when none."""
    if not osp.isdir(folder):
        raise MissingFileError(f'{folder} does not exist (or is not a folder)')
    found = sorted(osp.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
        raise DataError(f'{folder} holds no image file (looked recursively for {", ".join(IMAGE_EXTENSIONS)})')
    return found


def label_image(labels: np.ndarray) -> np.ndarray:
    """The label file's pixels: class i as i + 1, 0 left for unlabeled (ADE20k's convention); uint8 up to 254
    classes, uint16 beyond."""
    stored = labels.astype(np.int64) + LABEL_OFFSET
    return stored.astype(np.uint8 if stored.max(initial=0) <= 255 else np.uint16)


def write_png(path: str, array: np.ndarray, rgb: bool = False) -> None:
    """Writes ``array`` (labels, or an RGB picture when ``rgb``) as a PNG, creating the folder."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, array[:, :, ::-1] if rgb else array):
        raise DataError(f'could not write {path}')


def colour_labels(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: every pixel in its class's palette colour."""
    return np.asarray(palette, dtype=np.uint8)[labels]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """The RGB image with the class colours blended in (``alpha`` of colour, mmseg's visualiser's default 0.5)."""
    colours = colour_labels(labels, palette).astype(np.float32)
    return np.clip(image.astype(np.float32) * (1 - alpha) + colours * alpha + 0.5, 0, 255).astype(np.uint8)


__all__ = ['IMAGE_EXTENSIONS', 'VIDEO_EXTENSIONS', 'ImageConversionWarning', 'read_image', 'as_rgb', 'list_images',
           'label_image', 'write_png', 'colour_labels', 'overlay']
