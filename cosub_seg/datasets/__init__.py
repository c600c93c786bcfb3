from .ink import RandomInkOnGround
from .digit_scenes import SCENE_CLASSES, DigitScenesDataset, write_digit_scenes
from .digits import DIGIT_CLASSES, write_digits
from .folder import ImageFolderDataset
from .samplers import RepeatAugSampler
from .seg_transforms import CheckSegAnnotation
from .transforms import (ColorJitter, GaussianBlur, PackClsInputs, RandomCrop, RandomResizedCrop,
                         ResizeShortSide, Solarize)

__all__ = [
    'SCENE_CLASSES', 'DigitScenesDataset', 'write_digit_scenes', 'DIGIT_CLASSES', 'write_digits',
    'ImageFolderDataset', 'RepeatAugSampler', 'CheckSegAnnotation', 'ColorJitter', 'GaussianBlur', 'PackClsInputs',
    'RandomCrop', 'RandomInkOnGround', 'RandomResizedCrop', 'ResizeShortSide', 'Solarize'
]
