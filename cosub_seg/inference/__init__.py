"""Inference without the training stack: :class:`Segmenter` (``from_pretrained`` + ``predict``), the model folder
(config.json + model.safetensors [+ model.onnx], :mod:`.model_folder`) and the image reading and writing of
``tools/segment.py`` (:mod:`.images`).

This package's own modules import numpy, OpenCV and Pillow only; ONNX Runtime is imported when an ONNX model is
loaded, and torch, mmcv, mmseg and MMEngine only when the torch backend is asked for. (``cosub_seg/__init__.py``
still registers the training modules where they are installed, and skips them where they are not: a test imports
and runs the ONNX path with mmcv, mmseg, MMEngine, torch and timm made unimportable.)
"""
from .images import ImageConversionWarning, list_images, read_image
from .model_folder import ModelFolder, read_model_folder
from .segmenter import Prediction, Segmenter

__all__ = ['Segmenter', 'Prediction', 'ModelFolder', 'read_model_folder', 'read_image', 'list_images',
           'ImageConversionWarning']
