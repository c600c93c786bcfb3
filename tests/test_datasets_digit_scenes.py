"""cosub_seg/datasets/digit_scenes.py and datasets/ade20k.py: the digit scenes follow ADE20k's layout and label
convention (read by mmseg's own ADE20KDataset) and are generated deterministically; the ADE20k layout check."""
import numpy as np
import pytest
from mmengine.registry import DefaultScope
from mmseg.datasets import ADE20KDataset

from cosub_seg.datasets.digit_scenes import SCENE_CLASSES, DigitScenesDataset, write_digit_scenes


@pytest.fixture(autouse=True)
def mmseg_scope():
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('scenes')
    write_digit_scenes(str(root), num_train=40, num_val=60)
    return str(root)


def pipeline():
    return [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True)]


def test_mmseg_ade20k_dataset_reads_the_layout(scenes):
    for split, count in (('training', 40), ('validation', 60)):
        ds = ADE20KDataset(data_root=scenes, pipeline=pipeline(),
                           data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'))
        assert len(ds) == count
        item = ds[0]
        assert item['img'].shape == (96, 96, 3)
        assert item['gt_seg_map'].shape == (96, 96)


def test_labels_follow_ade20k_convention_and_val_has_every_class(scenes):
    ds = DigitScenesDataset(data_root=scenes, pipeline=pipeline(),
                            data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'))
    assert ds.metainfo['classes'] == SCENE_CLASSES and len(SCENE_CLASSES) == 11
    counts = np.zeros(256, np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds[i]['gt_seg_map'].ravel(), minlength=256)
    # After reduce_zero_label: 0 background, 1-10 digits, 255 the ambiguous rims; nothing else.
    assert set(np.nonzero(counts)[0]) == set(range(11)) | {255}
    assert counts[0] > counts[1:11].sum() > counts[255] > 0
    assert counts[1:11].min() > 0


def test_generation_is_deterministic(tmp_path):
    import filecmp
    a, b = tmp_path / 'a', tmp_path / 'b'
    write_digit_scenes(str(a), num_train=3, num_val=3)
    write_digit_scenes(str(b), num_train=3, num_val=3)
    for sub in ('images/training', 'annotations/validation'):
        match, mismatch, errors = filecmp.cmpfiles(a / sub, b / sub, [p.name for p in (a / sub).iterdir()],
                                                   shallow=False)
        assert len(match) == 3 and not mismatch and not errors


def _digit_boxes(annotation):
    """(top, bottom, left, right) of each digit in an annotation file's labels: the connected regions of each digit
    class (2-11; two digits may touch, rarely two of one class)."""
    import cv2
    boxes = []
    for label in range(2, 12):
        count, regions = cv2.connectedComponents((annotation == label).astype(np.uint8), connectivity=8)
        for k in range(1, count):
            ys, xs = np.nonzero(regions == k)
            boxes.append((ys.min(), ys.max(), xs.min(), xs.max()))
    return boxes


def test_digits_are_light_32_pixel_digits_on_the_8_pixel_grid_of_a_dark_ground(scenes):
    """What the demo's transfer rests on (issue 13): each digit fits the 32-pixel square of a position on the 8-pixel
    grid (the pretraining images' size, the ViT's patch grid), two or three a scene, light ink on a dark ground."""
    import glob

    import cv2
    counts, merged = [], 0
    for path in sorted(glob.glob(f'{scenes}/annotations/validation/*.png')):
        annotation = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        image = cv2.imread(path.replace('annotations', 'images').replace('.png', '.jpg'))
        assert annotation.shape == image.shape[:2] == (96, 96)
        boxes = _digit_boxes(annotation)
        counts.append(len(boxes))
        for top, bottom, left, right in boxes:
            # Some grid square holds the whole region: its top-left corner at a multiple of 8 at most the region's.
            # Two digits of one class that touch make one region, held by two squares side by side (or diagonally).
            spans = [(top, bottom), (left, right)]
            squares = [1 if hi - lo < 32 else 2 for lo, hi in spans]
            merged += squares != [1, 1]
            for (lo, hi), n in zip(spans, squares):
                assert any(t <= lo and hi < t + 32 * n for t in range(0, 96, 8)), (path, lo, hi)
        gray = image.mean(axis=2)
        # The ground is scaled into [0, 80] (JPEG may add a little); a digit's label covers its strokes, of ink at
        # 200-255 where it covers the ground fully, and the thickening around them.
        assert np.percentile(gray[annotation == 1], 99) <= 90
        assert np.percentile(gray[annotation >= 2], 90) >= 190
    # A digit whose strokes break into pieces counts more than once: the count is checked loosely.
    assert min(counts) >= 1 and 2.0 < np.mean(counts) < 3.5 and merged <= 0.05 * sum(counts)


def test_writing_again_replaces_the_scenes_an_earlier_run_wrote(tmp_path):
    import os
    write_digit_scenes(str(tmp_path), num_train=5, num_val=2)
    write_digit_scenes(str(tmp_path), num_train=3, num_val=1)
    assert len(os.listdir(tmp_path / 'images' / 'training')) == 3
    assert len(os.listdir(tmp_path / 'annotations' / 'validation')) == 1


def test_a_digit_larger_than_the_scene_or_an_empty_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match='digit_size 48 does not fit a scene of 32 pixels'):
        write_digit_scenes(str(tmp_path), num_train=1, num_val=1, size=32, digit_size=48)
    with pytest.raises(ValueError, match=r'digits must be a range .* got \(0, 2\)'):
        write_digit_scenes(str(tmp_path), num_train=1, num_val=1, digits=(0, 2))


def _touch_layout(root, train=2, val=1):
    for split, n in (('training', train), ('validation', val)):
        for sub, ext in (('images', 'jpg'), ('annotations', 'png')):
            folder = root / sub / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f'ADE_{split}_{i:08d}.{ext}').write_bytes(b'')


def test_ade20k_layout_check_counts_pairs_and_names_what_is_missing(tmp_path):
    from cosub_seg.datasets.ade20k import check_ade20k_layout
    expected = dict(training=2, validation=1)
    _touch_layout(tmp_path)
    assert check_ade20k_layout(str(tmp_path), expected) == expected
    (tmp_path / 'annotations' / 'training' / 'ADE_training_00000001.png').unlink()
    with pytest.raises(ValueError, match='ADE_training_00000001.jpg'):
        check_ade20k_layout(str(tmp_path), expected)
    (tmp_path / 'annotations' / 'training' / 'ADE_training_00000001.png').write_bytes(b'')
    with pytest.raises(ValueError, match='holds 2 images'):
        check_ade20k_layout(str(tmp_path), dict(training=1, validation=2))
    with pytest.raises(FileNotFoundError, match='ADEChallengeData2016'):
        check_ade20k_layout(str(tmp_path / 'missing'), expected)
