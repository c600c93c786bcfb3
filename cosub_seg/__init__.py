"""cosub_seg: submodel co-training (cosub) for vision backbones, from ImageNet-style pretraining to segmentation.

Importing the package registers its models, datasets, transforms, metrics and optimiser pieces in MMEngine's and
mmseg's registries, so configs reach them with ``custom_imports=dict(imports=['cosub_seg'])``; it changes nothing
else in the process. The method itself lives in :mod:`cosub_seg.cosub`, in plain PyTorch. Training runs also need
:mod:`cosub_seg.runtime` and its process-wide :func:`cosub_seg.runtime.install` (the tools and our configs call it).
ARCHITECTURE.md is the floor plan.

Where the training stack (torch, timm, MMEngine, mmcv, mmseg) is not installed, as after ``pip install
'cosub_seg[infer]'`` without mmcv, the package still imports and registers nothing: :mod:`cosub_seg.inference`
(``cosub_seg.Segmenter``, loaded on first use) runs an exported ONNX model with ONNX Runtime and numpy alone.
"""
from .known_warnings import quiet_imports
from .version import __version__

# The packages the registration imports need; a missing one of them (and only of them) leaves the package usable
# for inference. Any other ImportError is a bug and is raised.
TRAINING_STACK = ('torch', 'torchvision', 'timm', 'mmengine', 'mmcv', 'mmseg')


def _missing_training_stack(error: ImportError) -> bool:
    name = getattr(error, 'name', None) or ''
    return name.split('.')[0] in TRAINING_STACK


try:
    with quiet_imports():  # MMEngine warns on import; the process's warning filters are left as they were
        from . import datasets, engine, evaluation, models, visualization  # noqa: F401  (registers the modules)
    from .cosub import CosubLoss, cosub_loss  # noqa: F401  (the package's API)
    HAS_TRAINING_STACK = True
except ImportError as error:  # inference only: see the docstring
    if not _missing_training_stack(error):
        raise
    HAS_TRAINING_STACK = False


def __getattr__(name):
    # ``cosub_seg.Segmenter`` without importing ONNX Runtime (or torch) on ``import cosub_seg``.
    if name == 'Segmenter':
        from .inference import Segmenter
        return Segmenter
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = (['CosubLoss', 'cosub_loss'] if HAS_TRAINING_STACK else []) + ['Segmenter', '__version__']
