"""cosub_seg/visualization/: the data each chart draws (training curves, per-class IoU, confusion matrix), the files
read back as PNG of the expected size and colours, and the prediction pictures (image | truth | prediction | errors
with a legend), pixel by pixel against what is worked out here. (The confusion matrix's numbers are in
test_evaluation_seg_metrics.py.)"""
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
from cosub_seg.datasets.digit_scenes import SCENE_CLASSES, SCENE_PALETTE
from cosub_seg.visualization import (SideBySideSegVisualizer, compose_prediction_picture, draw_predictions,
                                     plot_confusion_matrix, plot_per_class_iou, plot_training_curves)
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


def _iteration_records(max_iters=1000, log_every=50, val_every=200):
    """scalars.json of an iteration-based segmentation run as MMEngine writes it: training records every 50
    iterations, validation (mIoU, mAcc, aAcc, per-class IoU, timings) every 200 with step = iteration."""
    records = []
    for i in range(log_every, max_iters + 1, log_every):
        records.append({'base_lr': 1e-3, 'lr': 1e-3 * (1 - i / max_iters), 'data_time': 0.01, 'loss': 3.0 / i,
                        'decode.loss_ce': 2.0 / i, 'decode.acc_seg': 80.0, 'aux.loss_ce': 1.0 / i, 'time': 0.2,
                        'iter': i, 'step': i})
        if i % val_every == 0:
            records.append({'aAcc': 80.0 + i / 100, 'mIoU': 10.0 + i / 50, 'mAcc': 15.0 + i / 50,
                            'IoU.background': 90.0, 'data_time': 0.01, 'time': 0.1, 'step': i})
    return records


def test_training_curves_of_an_iteration_based_run_show_every_validation(tmp_path, figures):
    """Fine-tuning validates several times: each is a marker at its iteration, the last value is written next to
    its point, and the title counts them."""
    path = plot_training_curves(_iteration_records(), str(tmp_path / 'seg.png'), figsize=(10, 4), dpi=60)
    assert png_size(path) == (600, 240)  # figsize * dpi
    ax_val = figures[-1].axes[2]
    val = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax_val.lines}
    iters = [200, 400, 600, 800, 1000]
    assert val == {'mIoU': (iters, [10.0 + i / 50 for i in iters]), 'mAcc': (iters, [15.0 + i / 50 for i in iters]),
                   'aAcc': (iters, [80.0 + i / 100 for i in iters])}
    assert all(line.get_marker() == 'o' for line in ax_val.lines)
    assert sorted((t.get_text(), tuple(t.xy)) for t in ax_val.texts) == [
        ('30.0', (1000, 30.0)), ('35.0', (1000, 35.0)), ('90.0', (1000, 90.0))]
    assert ax_val.get_title() == 'validation (5 evaluations)'
    assert ax_val.get_xlim()[0] == 0 and ax_val.get_xlim()[1] > 1000  # room for the last value
    ax_loss = figures[-1].axes[0]
    assert {line.get_label() for line in ax_loss.lines} == {'loss', 'decode.loss_ce', 'aux.loss_ce'}


# ---------------------------------------------------------------------------------------------- prediction pictures

PANEL, GAP, HEADER, ROW, PAD, ENTRY, SWATCH = 384, 8, 28, 24, 8, 176, 16
IGNORED, RED = (200, 200, 200), (255, 0, 0)


def _scene_labels(size=128, seed=0):
    """An image, a truth with classes 0..10 in blocks and an ignored (255) band, and a prediction wrong in places
    (including where the truth is ignored, which must not count)."""
    rng = np.random.RandomState(seed)
    image = rng.randint(0, 256, (size, size, 3)).astype(np.uint8)
    truth = np.zeros((size, size), np.int64)
    for k in range(1, 11):
        truth[(k - 1) * 12:(k - 1) * 12 + 10, 10:60] = k
    truth[:, 60:64] = 255
    prediction = np.where(truth == 255, 0, truth)
    prediction[rng.rand(size, size) < 0.1] = 4
    prediction[100:120, 70:120] = 7
    return image, truth, prediction


def _blocks(array, factor):
    """Nearest-neighbour upscaling, written differently from the code's: index arithmetic."""
    rows = np.arange(array.shape[0] * factor) // factor
    cols = np.arange(array.shape[1] * factor) // factor
    return array[rows][:, cols]


def _panel(picture, index, height=PANEL, width=PANEL):
    x = index * (width + GAP)
    return picture[HEADER:HEADER + height, x:x + width]


def _legend_swatch(picture, top, index, columns):
    """The centre pixel of legend entry ``index``'s swatch (rows of ``columns`` entries under ``top``)."""
    row, column = divmod(index, columns)
    x = PAD + column * ENTRY + SWATCH // 2
    y = top + PAD + row * ROW + (ROW - SWATCH) // 2 + SWATCH // 2
    return tuple(int(v) for v in picture[y, x])


def test_prediction_picture_has_four_panels_of_384_a_header_and_a_legend_of_every_class():
    image, truth, prediction = _scene_labels()
    picture = compose_prediction_picture(image, SCENE_CLASSES, SCENE_PALETTE, truth, prediction, name='scene.jpg')
    # 128 x 128 -> factor 3 -> four 384-pixel panels with three 8-pixel gaps; 28-pixel header; legend of 11 classes +
    # 'ignored' + 'wrong' = 13 entries in rows of (1560 - 16) // 176 = 8: 2 rows of 24 with 8 above and below.
    width = 4 * PANEL + 3 * GAP
    legend = 2 * PAD + 2 * ROW
    assert picture.shape == (HEADER + PANEL + legend, width, 3) == (476, 1560, 3) and picture.dtype == np.uint8
    palette = np.array(SCENE_PALETTE, np.uint8)
    # Image: the image itself in 3 x 3 blocks.
    np.testing.assert_array_equal(_panel(picture, 0), _blocks(image, 3))
    # Truth: the palette colour of each label, the ignored band in the neutral colour.
    expected_truth = np.where((truth == 255)[..., None], np.array(IGNORED, np.uint8), palette[np.minimum(truth, 10)])
    np.testing.assert_array_equal(_panel(picture, 1), _blocks(expected_truth, 3))
    # Prediction: the palette colour of each predicted label.
    np.testing.assert_array_equal(_panel(picture, 2), _blocks(palette[prediction], 3))
    # Errors: red exactly where the prediction differs from a labelled truth; the ignored band neutral (the
    # prediction is wrong there too, and it does not count); elsewhere the image in grey at half brightness.
    errors = _panel(picture, 3)
    wrong = _blocks((prediction != truth) & (truth != 255), 3)
    ignored = _blocks(truth == 255, 3)
    is_red = (errors == RED).all(axis=2)
    np.testing.assert_array_equal(is_red, wrong)
    assert (errors[ignored] == IGNORED).all()
    rest = errors[~wrong & ~ignored].astype(int)
    assert (rest[:, 0] == rest[:, 1]).all() and (rest[:, 1] == rest[:, 2]).all() and rest.max() <= 128
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(float) * 0.5
    np.testing.assert_allclose(errors[..., 0][~wrong & ~ignored], _blocks(grey, 3)[~wrong & ~ignored], atol=0.51)
    # Gaps white; every title in the header strip (dark text pixels above each panel), none over the panels (their
    # pixels are exactly the expected ones above).
    for gap in range(3):
        x = gap * (PANEL + GAP) + PANEL
        assert (picture[:HEADER + PANEL, x:x + GAP] == 255).all()
    for index in range(4):
        x = index * (PANEL + GAP)
        assert (picture[:HEADER, x:x + PANEL] < 128).any(), index
    # Legend: one swatch per class in class order, then 'ignored' and 'wrong', in their colours at their places.
    colours = [tuple(c) for c in SCENE_PALETTE] + [IGNORED, RED]
    top = HEADER + PANEL
    assert [_legend_swatch(picture, top, i, columns=8) for i in range(13)] == colours
    row_2_end = PAD + 5 * ENTRY  # entries 8..12 fill five columns of the second row; the rest is white
    assert (picture[top + PAD + ROW:top + PAD + 2 * ROW, row_2_end:] == 255).all()


def test_prediction_picture_errors_title_and_legend_of_present_classes_for_many_classes():
    from cosub_seg.visualization.overlays import errors_title, legend_entries
    image, truth, prediction = _scene_labels()
    labelled = int((truth != 255).sum())
    wrong = int(((prediction != truth) & (truth != 255)).sum())
    assert errors_title(truth, prediction) == (f'errors (red): {100 * wrong / labelled:.1f} % wrong, '
                                               f'pixel acc. {100 * (labelled - wrong) / labelled:.1f} %')
    # 150 classes (ADE20k): the legend lists only those in the truth or the prediction (0..10 here), then the two
    # marks; with 20 or fewer it lists all of them.
    classes = [f'class {k}' for k in range(150)]
    palette = [(k, 255 - k, (7 * k) % 256) for k in range(150)]
    entries = legend_entries(classes, palette, truth, prediction)
    assert [name for name, _ in entries] == [f'class {k}' for k in range(11)] + ['ignored (not scored)',
                                                                               'wrong (errors panel)']
    picture = compose_prediction_picture(image, classes, palette, truth, prediction)
    assert picture.shape == (476, 1560, 3)  # 13 entries: two rows again
    assert [_legend_swatch(picture, HEADER + PANEL, i, 8) for i in range(11)] == [palette[k] for k in range(11)]
    zeros = np.zeros((2, 2), np.int64)
    assert [name for name, _ in legend_entries(classes[:20], palette[:20], zeros, zeros)][:20] == classes[:20]
    # A 96 x 200 image: factor 4 (96 * 4 = 384 short side), panels 384 x 800; image and prediction only: no errors
    # panel, and the legend has no 'ignored' or 'wrong' entry.
    wide = compose_prediction_picture(np.zeros((96, 200, 3), np.uint8), SCENE_CLASSES, SCENE_PALETTE,
                                      prediction=np.ones((96, 200), np.int64))
    columns = (2 * 800 + GAP - 2 * PAD) // ENTRY  # 9
    assert wide.shape == (HEADER + 384 + 2 * PAD + 2 * ROW, 2 * 800 + GAP, 3)  # 11 entries in rows of 9
    assert [_legend_swatch(wide, HEADER + 384, i, columns) for i in range(11)] == [tuple(c) for c in SCENE_PALETTE]
    # A large image is not upscaled.
    assert compose_prediction_picture(np.zeros((400, 500, 3), np.uint8), ['a']).shape == (HEADER + 400, 500, 3)
    with pytest.raises(ValueError, match='must match'):
        compose_prediction_picture(image, SCENE_CLASSES, SCENE_PALETTE, truth[:64])
    with pytest.raises(ValueError, match=r'labels \[11\] are neither'):
        compose_prediction_picture(image, SCENE_CLASSES, SCENE_PALETTE, prediction=np.full((128, 128), 11))


def test_seg_visualizer_hook_path_draws_the_same_picture(tmp_path):
    """mmseg's SegVisualizationHook calls add_datasample(name, image, data_sample, ...) and the visualiser's
    LocalVisBackend saves it: the same picture as compose_prediction_picture, named after the image."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    image, truth, prediction = _scene_labels()
    sample = SegDataSample(gt_sem_seg=PixelData(data=torch.from_numpy(truth)[None]),
                           pred_sem_seg=PixelData(data=torch.from_numpy(prediction)[None]))
    sample.set_metainfo(dict(img_path='/data/scene_7.jpg'))
    visualizer = SideBySideSegVisualizer(name=f'test_{tmp_path.name}', save_dir=str(tmp_path))
    visualizer.set_dataset_meta(classes=SCENE_CLASSES, palette=SCENE_PALETTE)
    out = str(tmp_path / 'out.png')
    visualizer.add_datasample('test_scene_7.jpg', image, sample, out_file=out)
    expected = compose_prediction_picture(image, SCENE_CLASSES, SCENE_PALETTE, truth, prediction, name='scene_7.jpg')
    np.testing.assert_array_equal(mmcv.imread(out, channel_order='rgb'), expected)


def test_draw_predictions_writes_the_picture_of_each_chosen_image(tmp_path):
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
        # 96 x 96 -> factor 4: four 384 panels, header, legend of 13 entries in 2 rows.
        assert png_size(path) == (4 * PANEL + 3 * GAP, HEADER + PANEL + 2 * PAD + 2 * ROW)
        drawn = mmcv.imread(path, channel_order='rgb')
        name = osp.basename(path)[:-4]
        image = mmcv.imread(osp.join(root, 'images/validation', name + '.jpg'), channel_order='rgb')
        np.testing.assert_array_equal(_panel(drawn, 0), _blocks(image, 4))  # the image itself
        # The truth panel: the annotation file's labels after reduce_zero_label (0 -> ignored, k -> k - 1).
        annotation = cv2.imread(osp.join(root, 'annotations/validation', name + '.png'), cv2.IMREAD_UNCHANGED)
        truth = annotation.astype(np.int64) - 1
        expected = np.where((annotation == 0)[..., None], np.array(IGNORED, np.uint8),
                            np.array(SCENE_PALETTE, np.uint8)[np.maximum(truth, 0)])
        np.testing.assert_array_equal(_panel(drawn, 1), _blocks(expected, 4))
