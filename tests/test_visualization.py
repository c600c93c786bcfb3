"""Pictures and the confusion matrix: numbers against hand counts, files read back as PNG of the expected size."""
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

import cosub_seg  # noqa: F401
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.evaluation import ConfusionMatrixMetric, confusion_matrix
from cosub_seg.visualization import (draw_predictions, plot_confusion_matrix, plot_per_class_iou,
                                     plot_training_curves)
from cosub_seg.visualization.curves import split_records

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_size(path):
    """(width, height) from the PNG header (signature, then the IHDR chunk), after checking the file decodes."""
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE, f'{path} is not a PNG'
    assert head[12:16] == b'IHDR'
    width, height = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape[:2] == (height, width)
    return width, height


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


def _sample(label, pred):
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.as_tensor(label)[None])
    sample.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    return sample.to_dict()


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


def _records():
    """scalars.json of an epoch-based run: 4 iterations an epoch, validation after epochs 1 and 2 (step = epoch)."""
    train = [dict(lr=1e-3 * i, loss=1.0 / i, loss_label=0.6 / i, loss_peer=0.4 / i, epoch=(i - 1) // 4 + 1, iter=i,
                  step=i) for i in range(1, 9)]
    val = [{'accuracy/top1': 50.0, 'accuracy/top5': 90.0, 'step': 1},
           {'accuracy/top1': 70.0, 'accuracy/top5': 95.0, 'step': 2}]
    return train[:4] + val[:1] + train[4:] + val[1:]


def test_validation_of_an_epoch_is_placed_at_its_last_iteration():
    train, val = split_records(_records())
    assert len(train) == 8
    assert [(r['iter'], r['accuracy/top1']) for r in val] == [(4, 50.0), (8, 70.0)]


def test_training_curves_png(tmp_path):
    path = plot_training_curves(_records(), str(tmp_path / 'curves.png'), title='t', figsize=(12, 3), dpi=50)
    assert png_size(path) == (600, 150)
    assert png_size(plot_training_curves(_records(), str(tmp_path / 'default.png'))) == (1500, 400)
    with pytest.raises(ValueError, match='no training records'):
        plot_training_curves(_records()[4:5], str(tmp_path / 'none.png'))


def test_per_class_iou_and_confusion_matrix_png(tmp_path):
    per_class = {'background': 90.5, 'digit 0': 40.0, 'digit 1': float('nan')}
    assert png_size(plot_per_class_iou(per_class, str(tmp_path / 'iou.png'), figsize=(6, 3), dpi=40)) == (240, 120)
    # Default: 8 inches wide, 0.25 inch per class + 1 (at least 3) high, 100 dpi.
    many = {f'class {i}': float(i) for i in range(20)}
    assert png_size(plot_per_class_iou(many, str(tmp_path / 'many.png'))) == (800, 600)
    counts = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    assert png_size(plot_confusion_matrix(counts, ['a', 'b', 'c'], str(tmp_path / 'cm.png'))) == (900, 800)
    with pytest.raises(ValueError, match='must be 3x3'):
        plot_confusion_matrix(counts[:2], ['a', 'b', 'c'], str(tmp_path / 'bad.png'))


def test_overlays_are_image_truth_prediction_side_by_side(tmp_path):
    root = str(tmp_path / 'scenes')
    write_digit_scenes(root, num_train=1, num_val=5, size=96)
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'))
    cfg.model.backbone.init_cfg = None
    cfg.test_dataloader.dataset.data_root = root
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    paths = draw_predictions(model, dataset, str(tmp_path / 'overlays'), num_images=3)
    assert [osp.basename(p) for p in paths] == [f'digitscene_val_0000{i}.png' for i in (0, 2, 4)]
    for path in paths:
        assert png_size(path) == (3 * 96, 96)
        drawn = mmcv.imread(path, channel_order='rgb')
        image = mmcv.imread(osp.join(root, 'images/validation', osp.basename(path)[:-4] + '.jpg'),
                            channel_order='rgb')
        np.testing.assert_array_equal(drawn[:, :96], image)  # left: the image itself
        assert np.abs(drawn[:, 96:192].astype(int) - image).max() > 50  # middle: the labels painted over it
