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
        assert item['img'].shape == (128, 128, 3)
        assert item['gt_seg_map'].shape == (128, 128)


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
