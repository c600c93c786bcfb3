from .checked import BadSampleError, CheckedDataset, CheckSegAnnotation, Draw, ReproducibleSampler
from .digit_scenes import SCENE_CLASSES, DigitScenesDataset, write_digit_scenes
from .digits import DIGIT_CLASSES, write_digits
from .folder import ImageFolderDataset
from .samplers import RepeatAugSampler
from .split_checks import SplitCheckHook, check_class_counts, check_split, check_split_configs
from .transforms import (ColorJitter, GaussianBlur, PackClsInputs, RandomCrop, RandomResizedCrop,
                         ResizeShortSide, Solarize)

__all__ = [
    'BadSampleError', 'CheckedDataset', 'CheckSegAnnotation', 'Draw', 'ReproducibleSampler',
    'SCENE_CLASSES', 'DigitScenesDataset', 'write_digit_scenes', 'DIGIT_CLASSES', 'write_digits',
    'ImageFolderDataset', 'RepeatAugSampler', 'ColorJitter', 'GaussianBlur', 'PackClsInputs', 'RandomCrop',
    'RandomResizedCrop', 'ResizeShortSide', 'Solarize', 'SplitCheckHook', 'check_class_counts', 'check_split',
    'check_split_configs'
]
