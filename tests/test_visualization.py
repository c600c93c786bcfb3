"""cosub_seg/visualization/: the data each chart draws (training curves, per-class IoU, confusion matrix), the files
read back as PNG of the expected size and colours, and the side-by-side overlays. (The confusion matrix's numbers
are in test_evaluation_seg_metrics.py.)"""
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS, MODELS

import cosub_seg  # noqa: F401
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.visualization import draw_predictions, plot_confusion_matrix, plot_per_class_iou, plot_training_curves
from cosub_seg.visualization.curves import split_records

from helpers import png_size

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


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


@pytest.fixture
def figures(monkeypatch):
    """The figures the chart functions close after saving, kept for the test to read their artists."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    kept, close = [], plt.close

    def keep_and_close(fig=None):
        kept.append(fig)
        close(fig)
    monkeypatch.setattr(plt, 'close', keep_and_close)
    return kept


def pixel_at(png, ax, x, y):
    """RGB of the saved PNG at data point (x, y) of ``ax`` (display coordinates count from the bottom)."""
    px, py = ax.transData.transform((x, y))
    return png[png.shape[0] - 1 - int(py), int(px)].astype(int)


def test_training_curves_png(tmp_path, figures):
    """Each panel draws the numbers of the records, worked out here: every loss term against its iteration, the
    learning rate, and each validation metric at the last iteration of its epoch (4 and 8)."""
    path = plot_training_curves(_records(), str(tmp_path / 'curves.png'), title='t', figsize=(12, 3), dpi=50)
    assert png_size(path) == (600, 150)
    ax_loss, ax_lr, ax_val = figures[-1].axes
    iters = list(range(1, 9))
    drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax_loss.lines}
    assert drawn.keys() == {'loss', 'loss_label', 'loss_peer'}
    for key, scale in (('loss', 1.0), ('loss_label', 0.6), ('loss_peer', 0.4)):
        assert drawn[key][0] == iters
        np.testing.assert_allclose(drawn[key][1], [scale / i for i in iters], rtol=1e-12)
    [lr] = ax_lr.lines
    assert list(lr.get_xdata()) == iters
    np.testing.assert_allclose(lr.get_ydata(), [1e-3 * i for i in iters], rtol=1e-12)
    val = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax_val.lines}
    assert val == {'accuracy/top1': ([4, 8], [50.0, 70.0]), 'accuracy/top5': ([4, 8], [90.0, 95.0])}
    assert png_size(plot_training_curves(_records(), str(tmp_path / 'default.png'))) == (1500, 400)
    with pytest.raises(ValueError, match='no training records'):
        plot_training_curves(_records()[4:5], str(tmp_path / 'none.png'))


def test_per_class_iou_and_confusion_matrix_png(tmp_path, figures):
    per_class = {'background': 90.5, 'digit 0': 40.0, 'digit 1': float('nan')}
    assert png_size(plot_per_class_iou(per_class, str(tmp_path / 'iou.png'), figsize=(6, 3), dpi=40)) == (240, 120)
    # The bars: one per class in the given order (top to bottom), as long as its IoU (NaN: none, written 'n/a'),
    # the dashed mean over the classes with a value, (90.5 + 40) / 2 = 65.25.
    [ax] = figures[-1].axes
    bars = sorted(ax.patches, key=lambda p: p.get_y())
    assert [round(p.get_y() + p.get_height() / 2, 6) for p in bars] == [0, 1, 2]
    assert [p.get_width() for p in bars] == [90.5, 40.0, 0.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ['background', 'digit 0', 'digit 1']
    assert [(t.get_text(), t.get_position()) for t in ax.texts] == [('90.5', (91.5, 0)), ('40.0', (41.0, 1)),
                                                                    ('n/a', (1.0, 2))]
    [mean] = ax.lines
    assert list(mean.get_xdata()) == [65.25, 65.25] and mean.get_label() == 'mean 65.25'
    # Read back (between the grid lines at multiples of 20): the bars of 90.5 and 40 are tab:blue at 10 and 30 %,
    # the first of them at 70 % too, the second is white (background) at 70 %, and so is the 'digit 1' row at 30 %.
    png = cv2.cvtColor(cv2.imread(str(tmp_path / 'iou.png')), cv2.COLOR_BGR2RGB)
    blue, white = np.array([31, 119, 180]), np.array([255, 255, 255])
    for x, y, colour in ((10, 0, blue), (30, 0, blue), (70, 0, blue), (10, 1, blue), (30, 1, blue), (70, 1, white),
                         (30, 2, white)):
        assert np.abs(pixel_at(png, ax, x, y) - colour).max() <= 2, (x, y)
    # Default: 8 inches wide, 0.25 inch per class + 1 (at least 3) high, 100 dpi.
    many = {f'class {i}': float(i) for i in range(20)}
    assert png_size(plot_per_class_iou(many, str(tmp_path / 'many.png'))) == (800, 600)
    counts = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    assert png_size(plot_confusion_matrix(counts, ['a', 'b', 'c'], str(tmp_path / 'cm.png'))) == (900, 800)
    # Each row as % of its true class, worked here; a class with no pixel is a row of 0 and has no numbers written.
    percent = np.array([[500 / 6, 100 / 6, 0], [50, 50, 0], [0, 0, 0]])
    ax = figures[-1].axes[0]
    [image] = ax.images
    np.testing.assert_allclose(image.get_array(), percent, rtol=1e-12)
    assert image.get_clim() == (0, 100)
    assert [(t.get_text(), t.get_position(), t.get_color()) for t in ax.texts] == [
        ('83', (0, 0), 'white'), ('17', (1, 0), 'black'), ('0', (2, 0), 'black'),
        ('50', (0, 1), 'black'), ('50', (1, 1), 'black'), ('0', (2, 1), 'black')]
    # Read back: each cell, away from its number, has the colour of its percentage on matplotlib's Blues map.
    import matplotlib
    png = cv2.cvtColor(cv2.imread(str(tmp_path / 'cm.png')), cv2.COLOR_BGR2RGB)
    blues = matplotlib.colormaps['Blues']
    for i in range(3):
        for j in range(3):
            expected = np.round(np.array(blues(percent[i, j] / 100)[:3]) * 255)
            assert np.abs(pixel_at(png, ax, j + 0.3, i + 0.3) - expected).max() <= 2, (i, j)
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
