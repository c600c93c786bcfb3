"""cosub_seg: submodel co-training (cosub) for vision backbones, from ImageNet-style pretraining to segmentation.

Importing the package registers its MMEngine modules, so configs reach them with
``custom_imports=dict(imports=['cosub_seg'])``. The method itself lives in :mod:`cosub_seg.cosub`, in plain PyTorch.
"""
from .known_warnings import filter_known_warnings

filter_known_warnings()  # before MMEngine is imported: it warns on import

# Importing the modules registers them and allow-lists the classes of our checkpoints.
from . import checkpoint, datasets, engine, evaluation, models, visualization  # noqa: E402, F401
from .cosub import CosubLoss, cosub_loss  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ['CosubLoss', 'cosub_loss', '__version__']
