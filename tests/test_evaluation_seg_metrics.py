"""cosub_seg/evaluation/seg_metrics.py: segmentation metrics against confusion matrices counted in the test (by hand
and with numpy): PerClassIoUMetric's mIoU and per-class IoU, confusion_matrix, and ConfusionMatrixMetric, whose
IoU agrees with mmseg's IoUMetric."""
import math
import re

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
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


def _per_class_iou(pairs, num_classes):
    counts = _counts(pairs, num_classes).astype(np.float64)
    diag = np.diag(counts)
    with np.errstate(invalid='ignore', divide='ignore'):
        return diag / (counts.sum(1) + counts.sum(0) - diag) * 100


def test_per_class_iou_is_rounded_to_two_decimals():
    """IoU.<class> equals round(IoU x 100, 2) exactly, with IoU worked here from the matrix. The data are checked to
    give values whose third decimal is not 0 (so 2 and 3 decimals differ) and that lie more than 1e-4 from a
    rounding boundary (mmseg counts in float32: its last-bit differences cannot move a value across one)."""
    pairs = _images()
    iou = _per_class_iou(pairs, len(CLASSES))[:4]
    assert all(round(v, 2) != round(v, 3) for v in iou)
    assert all(abs((v * 100) % 1 - 0.5) > 1e-2 for v in iou)
    metric = PerClassIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample(label, pred) for label, pred in pairs])
    results = metric.evaluate(len(pairs))
    assert [results[f'IoU.{name}'] for name in CLASSES[:4]] == [round(v, 2) for v in iou]


def test_nan_to_num_replaces_the_iou_of_a_class_in_no_label_and_no_prediction():
    """'sign' is in no label and no prediction: its IoU is 0 / 0. With nan_to_num=0 it is reported as 0.0 and the
    mean runs over all five classes (mmseg's summary: the mean of the per-class values x 100, rounded to 2
    decimals); without it (the default) it is NaN and left out of the mean (the first test)."""
    pairs = _images()
    iou = _per_class_iou(pairs, len(CLASSES))
    assert np.isnan(iou[4])
    metric = PerClassIoUMetric(iou_metrics=['mIoU'], nan_to_num=0)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample(label, pred) for label, pred in pairs])
    results = metric.evaluate(len(pairs))
    assert results['IoU.sign'] == 0.0
    assert [results[f'IoU.{name}'] for name in CLASSES[:4]] == [round(v, 2) for v in iou[:4]]
    assert results['mIoU'] == pytest.approx(iou[:4].sum() / 5, abs=0.005 + 1e-9)
    assert abs(results['mIoU'] - np.nanmean(iou)) > 1  # the NaN class does count in the mean


def test_confusion_matrix_refuses_sizes_that_differ_and_predictions_outside_the_classes():
    """A label and a prediction of different pixel counts, and a prediction of -1 or num_classes on a counted pixel,
    raise (the latter would otherwise land in another cell: label * C + C is cell [label + 1, 0]). On a pixel that is
    not counted (ignore index, or a label outside the classes) any prediction is accepted and not counted."""
    label = np.array([[0, 1, 2], [2, 1, 0]])
    with pytest.raises(ValueError, match='label and prediction differ in size: 6 and 5 pixels'):
        confusion_matrix(label, np.zeros(5, int), num_classes=3)
    for bad, values in ((3, [0, 1, 2, 3]), (-1, [-1, 0, 1, 2])):  # the message lists the predictions made
        pred = np.array([[0, 1, 2], [2, bad, 0]])
        with pytest.raises(ValueError, match=re.escape(f'a prediction lies outside [0, 3): {np.array(values)}')):
            confusion_matrix(label, pred, num_classes=3)
    label = np.array([0, 255, 1, 3, 2, -1, 2])
    pred = np.array([0, 9, 2, -4, 2, 7, 1])
    expected = np.zeros((3, 3), int)
    for t, p in ((0, 0), (1, 2), (2, 2), (2, 1)):  # the four counted pixels, by hand
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(label, pred, num_classes=3), expected)


def test_confusion_matrix_leaves_out_a_label_equal_to_the_class_count():
    """num_classes itself is not a class: a label of exactly 3 with 3 classes is not counted, wherever its
    prediction points."""
    label = np.array([[3, 0, 1], [2, 3, 3]])
    pred = np.array([[0, 0, 2], [2, 1, 2]])
    expected = np.zeros((3, 3), int)
    expected[0, 0] = expected[1, 2] = expected[2, 2] = 1
    np.testing.assert_array_equal(confusion_matrix(label, pred, num_classes=3), expected)


def test_255_is_ignored_by_default_even_with_more_than_255_classes():
    """With 300 classes, 255 is a class index by range; the default ignore index 255 still leaves it out, and the
    other labels count."""
    label = np.array([255, 254, 256, 0, 255])
    pred = np.array([255, 254, 3, 0, 1])
    counts = confusion_matrix(label, pred, num_classes=300)
    assert counts.shape == (300, 300) and counts.sum() == 3
    assert counts[254, 254] == counts[256, 3] == counts[0, 0] == 1
    metric = ConfusionMatrixMetric()
    metric.dataset_meta = dict(classes=tuple(f'c{i}' for i in range(300)))
    metric.process({}, [_sample(label.reshape(1, 5), pred.reshape(1, 5))])
    np.testing.assert_array_equal(metric.evaluate(1)['confusion_matrix'], counts)


def test_confusion_matrix_metric_uses_its_ignore_index_prefix_and_collect_device(monkeypatch):
    """ConfusionMatrixMetric(ignore_index=0): class 0's pixels drop out and 255 (not a class) too, against a count
    by hand; the prefix names the result; collect_device reaches MMEngine's collect_results (a spy records it)."""
    import mmengine.evaluator.metric as mmengine_metric
    devices = []
    real = mmengine_metric.collect_results

    def spy(results, size, device, *args, **kwargs):
        devices.append(device)
        return real(results, size, device, *args, **kwargs)

    monkeypatch.setattr(mmengine_metric, 'collect_results', spy)
    pairs = _images()
    by_hand = np.zeros((5, 5), int)
    for label, pred in pairs:
        for t, p in zip(label.ravel(), pred.ravel()):
            if t not in (0, 255):
                by_hand[t, p] += 1
    assert by_hand.sum() > 0 and (np.concatenate([lab.ravel() for lab, _ in pairs]) == 0).sum() > 0
    metric = ConfusionMatrixMetric(ignore_index=0, collect_device='gpu', prefix='test')
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample(label, pred) for label, pred in pairs])
    result = metric.evaluate(len(pairs))
    assert list(result) == ['test/confusion_matrix']
    np.testing.assert_array_equal(result['test/confusion_matrix'], by_hand)
    assert devices == ['gpu']


def test_confusion_matrix_counts_by_hand():
    label = np.array([[0, 0, 1],
                      [1, 2, 255]])
    pred = np.array([[0, 1, 1],
                     [2, 2, 0]])
    # (true, predicted) pairs: (0,0) (0,1) (1,1) (1,2) (2,2); the 255 pixel does not count.
    expected = np.array([[1, 1, 0],
                         [0, 1, 1],
                         [0, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(label, pred, num_classes=3), expected)
    with pytest.raises(ValueError, match='outside'):
        confusion_matrix(label, pred + 1, num_classes=3)


def test_confusion_matrix_metric_sums_images_and_agrees_with_mmseg_iou():
    rng = np.random.RandomState(0)
    labels = [rng.randint(0, 4, size=(6, 7)) for _ in range(3)]
    labels[0][0, :3] = 255
    preds = [rng.randint(0, 4, size=(6, 7)) for _ in range(3)]
    samples = [_sample(label, pred) for label, pred in zip(labels, preds)]
    meta = dict(classes=('a', 'b', 'c', 'd'))
    metric = ConfusionMatrixMetric()
    metric.dataset_meta = meta
    metric.process({}, samples)
    counts = metric.evaluate(3)['confusion_matrix']
    by_hand = np.zeros((4, 4), int)
    for label, pred in zip(labels, preds):
        for t, p in zip(label.ravel(), pred.ravel()):
            if t != 255:
                by_hand[t, p] += 1
    np.testing.assert_array_equal(counts, by_hand)
    assert counts.sum() == 3 * 42 - 3
    # IoU from the matrix (diagonal / (row + column - diagonal)) is mmseg's IoU of the same pixels.
    iou = IoUMetric()
    iou.dataset_meta = meta
    iou.process({}, samples)
    areas = [sum(r[i] for r in iou.results) for i in range(4)]
    mmseg_iou = iou.total_area_to_metrics(*areas, ['mIoU'])['IoU']
    diag = np.diag(counts)
    np.testing.assert_allclose(diag / (counts.sum(0) + counts.sum(1) - diag), mmseg_iou)
