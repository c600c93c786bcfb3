"""Segmentation transforms of this package: :class:`CheckSegAnnotation`, registered in mmseg's registry."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS as SEG_TRANSFORMS

from ..errors import ConfigKeyError, DataError


@SEG_TRANSFORMS.register_module()
class CheckSegAnnotation(BaseTransform):
    """Checks the segmentation map ``LoadAnnotations`` loaded: the size of its image, and labels in
    ``[0, num_classes)`` or the ignore index (after ``reduce_zero_label``). Put it right after ``LoadAnnotations``.

    A sample without an annotation file (no ``seg_map_path``: an image given to ``mmseg.apis.inference_model`` or
    ``MMSegInferencer``, which take ``LoadAnnotations`` out of the test pipeline, or a test set without labels)
    passes unchecked; a sample whose annotation file is named but was not loaded is an error in the pipeline.

    Args:
        num_classes: classes of the dataset (the decode head's ``num_classes``).
        ignore_index: the label of pixels without a class.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        seg = results.get('gt_seg_map')
        path = results.get('seg_map_path')
        if seg is None:
            if path is None:
                return results  # nothing to check: inference on an image, or a test set without annotations
            raise ConfigKeyError(f'CheckSegAnnotation found no gt_seg_map for {path}: put it after LoadAnnotations '
                                 'in the pipeline')
        path = path or '?'
        image_shape = tuple(results.get('ori_shape', seg.shape[:2]))
        if tuple(seg.shape[:2]) != image_shape:
            raise DataError(f'annotation {path} is {seg.shape[1]}x{seg.shape[0]} (w x h) but its image '
                            f'{results.get("img_path", "?")} is {image_shape[1]}x{image_shape[0]}: an annotation '
                            'must have its image\'s size; re-export it at that size')
        bad = (seg >= self.num_classes) & (seg != self.ignore_index) | (seg < 0)
        if bad.any():
            values = np.unique(seg[bad])[:10].tolist()
            reduced = ' (after reduce_zero_label, which subtracts 1 and turns 0 into it)' \
                if results.get('reduce_zero_label') else ''
            raise DataError(f'annotation {path} holds label values {values} outside [0, {self.num_classes}) that '
                             f'are not the ignore index {self.ignore_index}{reduced}: fix the annotation, or the '
                             'class count (num_classes) or reduce_zero_label of the config')
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'


__all__ = ['CheckSegAnnotation']
