from .digits import DIGIT_CLASSES, write_digits
from .folder import ImageFolderDataset
from .samplers import RepeatAugSampler
from .transforms import (ColorJitter, GaussianBlur, PackClsInputs, RandomCrop, RandomResizedCrop, ResizeShortSide,
                         Solarize)

__all__ = [
    'DIGIT_CLASSES', 'write_digits', 'ImageFolderDataset', 'RepeatAugSampler', 'ColorJitter', 'GaussianBlur',
    'PackClsInputs', 'RandomCrop', 'RandomResizedCrop', 'ResizeShortSide', 'Solarize'
]
