"""Segmentation metrics against a confusion matrix counted in the test with numpy: PerClassIoUMetric's mIoU and
per-class IoU, and the confusion matrix itself."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from cosub_seg.evaluation import ConfusionMatrixMetric, PerClassIoUMetric, confusion_matrix

CLASSES = ('sky', 'road', 'car', 'tree', 'sign')  # 'sign' (4) is in no label and no prediction: IoU NaN


def _sample(label, pred):
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.as_tensor(label)[None])
    sample.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    return sample.to_dict()


def _images():
    """Three label / prediction pairs over classes 0-3 with ignore (255) pixels; predictions right ~60 % of the
    time so that every IoU is different."""
    rng = np.random.RandomState(0)
    pairs = []
    for shape in ((6, 7), (5, 8), (4, 4)):
        label = rng.choice(4, size=shape, p=[0.4, 0.3, 0.2, 0.1])
        pred = np.where(rng.rand(*shape) < 0.6, label, rng.randint(0, 4, size=shape))
        label[0, :2] = 255
        pred[0, :2] = 4  # predictions on ignored pixels do not count (or 'sign' would get a false positive)
        pairs.append((label, pred))
    return pairs


def _counts(pairs, num_classes):
    """counts[t, p], pixels of true class t predicted as p, ignore pixels left out: np.bincount of t * C + p."""
    label = np.concatenate([lab.ravel() for lab, _ in pairs])
    pred = np.concatenate([p.ravel() for _, p in pairs])
    keep = label != 255
    return np.bincount(label[keep] * num_classes + pred[keep], minlength=num_classes ** 2).reshape(num_classes,
                                                                                                   num_classes)


def test_per_class_iou_metric_is_diag_over_row_plus_column_minus_diag():
    """mIoU, aAcc, mAcc and every IoU.<class> in percent against the matrix counted here: IoU_c = C[c, c] / (row_c +
    col_c - C[c, c]) x 100 (NaN for a class in no label and no prediction, left out of the mean), aAcc = trace / sum,
    mAcc = mean of C[c, c] / row_c; mmseg rounds to 2 decimals."""
    pairs = _images()
    counts = _counts(pairs, len(CLASSES)).astype(np.float64)
    diag, rows, cols = np.diag(counts), counts.sum(1), counts.sum(0)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = diag / (rows + cols - diag) * 100
        acc = diag / rows * 100
    assert np.isnan(iou[4]) and not np.isnan(iou[:4]).any()
    assert len({round(v, 1) for v in iou[:4]}) == 4  # all different: a shift of the names cannot go unseen
    metric = PerClassIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample(label, pred) for label, pred in pairs[:2]])
    metric.process({}, [_sample(*pairs[2])])  # batches add up
    results = metric.evaluate(3)
    assert set(results) == {'aAcc', 'mIoU', 'mAcc'} | {f'IoU.{name}' for name in CLASSES}
    for c, name in enumerate(CLASSES[:4]):
        assert results[f'IoU.{name}'] == pytest.approx(iou[c], abs=0.005 + 1e-9), name
    assert math.isnan(results['IoU.sign'])
    assert results['mIoU'] == pytest.approx(np.nanmean(iou), abs=0.005 + 1e-9)
    assert results['aAcc'] == pytest.approx(diag.sum() / counts.sum() * 100, abs=0.005 + 1e-9)
    assert results['mAcc'] == pytest.approx(np.nanmean(acc), abs=0.005 + 1e-9)


def test_confusion_matrix_metric_against_bincount_with_labels_outside_the_classes():
    """ConfusionMatrixMetric and confusion_matrix against np.bincount worked here; a label that is neither a class
    nor the ignore index (here 7 with 5 classes) is not counted, and another ignore index is honoured."""
    pairs = _images()
    metric = ConfusionMatrixMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample(label, pred) for label, pred in pairs])
    np.testing.assert_array_equal(metric.evaluate(3)['confusion_matrix'], _counts(pairs, 5))
    label, pred = pairs[0]
    odd = label.copy()
    odd[1, :3] = 7
    expected = _counts([(np.where(odd == 7, 255, odd), pred)], 5)
    np.testing.assert_array_equal(confusion_matrix(odd, pred, num_classes=5), expected)
    relabelled = np.where(label == 255, 0, label)  # ignore index 0: class 0's pixels and the old 255s drop out
    by_hand = np.zeros((5, 5), int)
    for t, p in zip(relabelled.ravel(), pred.ravel()):
        if t != 0:
            by_hand[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(relabelled, pred, num_classes=5, ignore_index=0), by_hand)
