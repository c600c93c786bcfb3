"""cosub_seg: submodel co-training (cosub) for vision backbones, from ImageNet-style pretraining to segmentation.

Importing the package registers its models, datasets, transforms, metrics and optimiser pieces in MMEngine's and
mmseg's registries, so configs reach them with ``custom_imports=dict(imports=['cosub_seg'])``; it changes nothing
else in the process. The method itself lives in :mod:`cosub_seg.cosub`, in plain PyTorch. Training runs also need
:mod:`cosub_seg.runtime` and its process-wide :func:`cosub_seg.runtime.install` (the tools and our configs call it).
ARCHITECTURE.md is the floor plan.
"""
from .known_warnings import quiet_imports

with quiet_imports():  # MMEngine warns on import; the process's warning filters are left as they were
    from . import datasets, engine, evaluation, models, visualization  # noqa: F401  (registers the modules)
from .cosub import CosubLoss, cosub_loss  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ['CosubLoss', 'cosub_loss', '__version__']
