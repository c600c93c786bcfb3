from .ink import RandomInkOnGround
from .digit_scenes import SCENE_CLASSES, DigitScenesDataset, write_digit_scenes
from .digits import DIGIT_CLASSES, write_digits
from .folder import ImageFolderDataset
from .imagenet21k import ImageNet21kDataset
from .samplers import RepeatAugSampler
from .seg_transforms import CheckSegAnnotation
from .transfer import CIFAR10Dataset, CIFAR100Dataset, Flowers102Dataset, INaturalistDataset, StanfordCarsDataset
from .transforms import (ColorJitter, GaussianBlur, PackClsInputs, RandomCrop, RandomResizedCrop,
                         ResizeShortSide, Solarize, TimmRandAugment)

__all__ = [
    'SCENE_CLASSES', 'DigitScenesDataset', 'write_digit_scenes', 'DIGIT_CLASSES', 'write_digits',
    'ImageFolderDataset', 'ImageNet21kDataset', 'RepeatAugSampler', 'CheckSegAnnotation', 'ColorJitter',
    'GaussianBlur', 'PackClsInputs',
    'RandomCrop', 'RandomInkOnGround', 'RandomResizedCrop', 'ResizeShortSide', 'Solarize', 'TimmRandAugment',
    'CIFAR10Dataset', 'CIFAR100Dataset', 'Flowers102Dataset', 'INaturalistDataset', 'StanfordCarsDataset'
]
