"""cosub_seg: submodel co-training (cosub) for vision backbones, from ImageNet-style pretraining to segmentation.

Importing the package registers its MMEngine modules, so configs reach them with
``custom_imports=dict(imports=['cosub_seg'])``. The method itself lives in :mod:`cosub_seg.cosub`, in plain PyTorch.
"""
from . import checkpoint, datasets, engine, evaluation, models, visualization  # noqa: F401  (registers, allow-list)
from .cosub import CosubLoss, cosub_loss
from .version import __version__

__all__ = ['CosubLoss', 'cosub_loss', '__version__']
