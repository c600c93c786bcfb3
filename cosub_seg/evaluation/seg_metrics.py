"""Segmentation metrics: mmseg's IoU with every class's IoU in the results, and a confusion matrix."""
from typing import Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS as SEG_METRICS


@SEG_METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """:class:`mmseg.evaluation.IoUMetric` (it still logs its per-class table) that also returns each class's IoU
    in percent as ``IoU.<class name>``, next to aAcc / mIoU / mAcc."""

    def compute_metrics(self, results: list) -> dict:
        summary = super().compute_metrics(results)
        areas = [sum(result[i] for result in results) for i in range(4)]
        # Only the IoU is asked for: the F-score's beta would not change it.
        per_class = self.total_area_to_metrics(*areas, ['mIoU'], self.nan_to_num)
        for name, iou in zip(self.dataset_meta['classes'], per_class['IoU']):
            summary[f'IoU.{name}'] = round(float(iou) * 100, 2)
        return summary


def confusion_matrix(label: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``counts[i, j]``: pixels of true class ``i`` predicted as ``j``; pixels labelled ``ignore_index`` (or any
    label outside ``[0, num_classes)``) are not counted."""
    label, pred = np.asarray(label).reshape(-1), np.asarray(pred).reshape(-1)
    if label.shape != pred.shape:
        raise ValueError(f'label and prediction differ in size: {label.size} and {pred.size} pixels')
    keep = (label != ignore_index) & (label >= 0) & (label < num_classes)
    if np.any((pred[keep] < 0) | (pred[keep] >= num_classes)):
        raise ValueError(f'a prediction lies outside [0, {num_classes}): {np.unique(pred[keep])}')
    index = label[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@SEG_METRICS.register_module()
class ConfusionMatrixMetric(BaseMetric):
    """Pixel confusion matrix of a segmentation test: ``confusion_matrix[i, j]`` counts the pixels of true class
    ``i`` predicted as class ``j``, ignore pixels excluded, summed over the test set (and over ranks).

    It returns the matrix (an int64 array) under ``confusion_matrix``: MMEngine prints it and writes it to the test
    run's JSON log, ``<work_dir>/<timestamp>/<timestamp>.json``. ``tools/test_seg.py --confusion-matrix`` adds this
    metric to a config's test evaluator. (mmseg's ``analysis_tools/confusion_matrix.py`` is a script, not a metric,
    and subtracts 1 from labels its pipeline has already reduced.)

    Args:
        ignore_index: label of pixels that do not count.
        collect_device, prefix: as :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = None

    def __init__(self, ignore_index: int = 255, collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ignore_index = ignore_index

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze().cpu().numpy()
            label = sample['gt_sem_seg']['data'].squeeze().cpu().numpy()
            self.results.append(confusion_matrix(label, pred, num_classes, self.ignore_index))

    def compute_metrics(self, results: list) -> dict:
        return dict(confusion_matrix=np.sum(results, axis=0))
