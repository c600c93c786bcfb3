"""cosub_seg/datasets/seg_sets.py (and ``tools/prepare_data.py`` cityscapes / pascal_context / coco_stuff164k): tiny
fixtures in each official layout written here (PNG / JPEG files a few pixels wide); the layout checks pass with the
fixture's counts and refuse, naming the folder or file, a missing folder, an image without its label, a wrong count,
a release without train-id labels (told to run --convert; Pascal Context told what to run); the Cityscapes and
COCO-Stuff conversions against the official tables (known ids, and mmseg's own COCO-Stuff mapping), idempotence;
mmseg's dataset classes and our base configs' pipelines (test, and training behind CheckedDataset) read the
converted fixtures. Fast."""
import importlib.util
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.datasets import seg_sets
from cosub_seg.datasets.seg_sets import (COCO_STUFF_ID_TO_TRAINID, check_cityscapes_layout,
                                         check_coco_stuff164k_layout, check_pascal_context_layout, convert_cityscapes,
                                         convert_coco_stuff164k)
from cosub_seg.errors import DataError, MissingFileError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
H, W = 4, 48  # every fixture image


def _write(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, array), path


def _image(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _labels(values, shift=0):
    """An H x W label map cycling through ``values`` (rolled by ``shift`` so that files differ)."""
    flat = np.resize(np.roll(np.asarray(values, dtype=np.uint8), shift), H * W)
    return flat.reshape(H, W)


# ---------------------------------------------------------------------------------------------------------------------
# fixtures in the official release layouts

CITYSCAPES_SPLITS = dict(train=[('aachen', 0), ('aachen', 1), ('bochum', 0)], val=[('frankfurt', 0)])


def _cityscapes_release(root):
    """leftImg8bit + gtFine as the official zips unpack: the labelIds (0-33 everywhere), no labelTrainIds."""
    for split, frames in CITYSCAPES_SPLITS.items():
        for i, (city, frame) in enumerate(frames):
            stem = f'{city}_{frame:06d}_000019'
            _write(osp.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'), _image(i))
            _write(osp.join(root, 'gtFine', split, city, f'{stem}_gtFine_labelIds.png'), _labels(range(34), i))
            _write(osp.join(root, 'gtFine', split, city, f'{stem}_gtFine_color.png'), _image(i + 10))
    return {split: len(frames) for split, frames in CITYSCAPES_SPLITS.items()}


COCO_SPLITS = dict(train2017=[9, 25, 30], val2017=[139])
COCO_VALUES = list(range(182)) + [255]


def _coco_stuff_release(root):
    """images/{train2017,val2017}/*.jpg and the stuffthingmaps (ids 0-181, 255) unzipped into annotations/."""
    for split, ids in COCO_SPLITS.items():
        for i, image_id in enumerate(ids):
            _write(osp.join(root, 'images', split, f'{image_id:012d}.jpg'), _image(i))
            _write(osp.join(root, 'annotations', split, f'{image_id:012d}.png'), _labels(COCO_VALUES, i))
    return {split: len(ids) for split, ids in COCO_SPLITS.items()}


PASCAL_SPLITS = dict(train=['2008_000002', '2008_000007'], val=['2008_000008'])


def _pascal_context_converted(root):
    """VOC2010 after mmseg's tools/dataset_converters/pascal_context.py: labels 0 (background) - 59."""
    for split, names in PASCAL_SPLITS.items():
        for i, name in enumerate(names):
            _write(osp.join(root, 'JPEGImages', f'{name}.jpg'), _image(i))
            _write(osp.join(root, 'SegmentationClassContext', f'{name}.png'), _labels(range(60), i))
        list_file = osp.join(root, 'ImageSets', 'SegmentationContext', f'{split}.txt')
        os.makedirs(osp.dirname(list_file), exist_ok=True)
        with open(list_file, 'w') as f:
            f.writelines(name + '\n' for name in names)
    os.makedirs(osp.join(root, 'JPEGImages'), exist_ok=True)
    _write(osp.join(root, 'JPEGImages', '2008_000099.jpg'), _image(9))  # VOC2010 images outside Pascal Context
    return {split: len(names) for split, names in PASCAL_SPLITS.items()}


def _read(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


# ---------------------------------------------------------------------------------------------------------------------
# Cityscapes

# From cityscapesScripts' helpers/labels.py, written out independently of seg_sets.py: (labelId, trainId).
CITYSCAPES_KNOWN = [(7, 0), (8, 1), (11, 2), (21, 8), (23, 10), (24, 11), (26, 13), (33, 18),
                    (0, 255), (1, 255), (6, 255), (9, 255), (10, 255), (14, 255), (18, 255), (29, 255), (30, 255)]


def test_cityscapes_release_is_told_to_convert_then_converts_and_passes(tmp_path):
    root = str(tmp_path / 'cityscapes')
    counts = _cityscapes_release(root)
    with pytest.raises(DataError, match=r'aachen_000000_000019_gtFine_labelTrainIds\.png.*prepare_data.py cityscapes '
                                        r'--root .* --convert'):
        check_cityscapes_layout(root, counts)

    assert convert_cityscapes(root) == dict(train=dict(written=3, skipped=0), val=dict(written=1, skipped=0))
    assert check_cityscapes_layout(root, counts) == counts
    stem = osp.join(root, 'gtFine', 'train', 'aachen', 'aachen_000001_000019_gtFine_')
    ids, train_ids = _read(stem + 'labelIds.png'), _read(stem + 'labelTrainIds.png')
    assert train_ids.shape == ids.shape and train_ids.dtype == np.uint8
    for label_id, train_id in CITYSCAPES_KNOWN:
        assert (ids == label_id).any(), label_id
        assert (train_ids[ids == label_id] == train_id).all(), (label_id, train_id)
    # The 19 evaluated classes, each from exactly one id; every other id ignored.
    assert sorted(np.unique(train_ids).tolist()) == list(range(19)) + [255]
    assert len({int(ids[train_ids == t][0]) for t in range(19)}) == 19

    # Idempotent: a rerun writes nothing and leaves the files as they were.
    before = {p: open(p, 'rb').read() for p in [stem + 'labelTrainIds.png']}
    mtime = os.stat(stem + 'labelTrainIds.png').st_mtime_ns
    assert convert_cityscapes(root, workers=2) == dict(train=dict(written=0, skipped=3),
                                                       val=dict(written=0, skipped=1))
    assert os.stat(stem + 'labelTrainIds.png').st_mtime_ns == mtime
    assert {p: open(p, 'rb').read() for p in before} == before
    # No .part files left behind.
    assert not [n for _, _, names in os.walk(root) for n in names if n.endswith('.part')]


def test_cityscapes_conversion_in_processes_equals_the_serial_one(tmp_path):
    serial, parallel = str(tmp_path / 'a'), str(tmp_path / 'b')
    _cityscapes_release(serial)
    _cityscapes_release(parallel)
    convert_cityscapes(serial)
    convert_cityscapes(parallel, workers=2)
    for dirpath, _, names in os.walk(osp.join(serial, 'gtFine')):
        for name in names:
            if name.endswith('labelTrainIds.png'):
                other = osp.join(parallel, osp.relpath(osp.join(dirpath, name), serial))
                assert np.array_equal(_read(osp.join(dirpath, name)), _read(other))


def test_cityscapes_check_names_what_is_wrong(tmp_path):
    root = str(tmp_path / 'cityscapes')
    counts = _cityscapes_release(root)
    convert_cityscapes(root)
    with pytest.raises(DataError, match=r'leftImg8bit/train holds 3 images with labels, Cityscapes has 2975'):
        check_cityscapes_layout(root)  # the official counts
    with pytest.raises(DataError, match='holds 3 images'):
        check_cityscapes_layout(root, dict(train=4, val=1))

    label = osp.join(root, 'gtFine', 'train', 'bochum', 'bochum_000000_000019_gtFine_labelTrainIds.png')
    original = label.replace('labelTrainIds', 'labelIds')
    os.rename(label, label + '.bak')
    with pytest.raises(DataError, match=r'bochum_000000_000019_gtFine_labelTrainIds\.png.*--convert'):
        check_cityscapes_layout(root, counts)  # its labelIds are there: convert
    os.rename(original, original + '.bak')
    with pytest.raises(DataError, match=r'1 images in .*leftImg8bit/train have no label .*'
                                        r'bochum_000000_000019_leftImg8bit\.png'):
        check_cityscapes_layout(root, counts)  # nothing to convert from: the label is missing
    os.rename(label + '.bak', label)
    os.rename(original + '.bak', original)

    image = osp.join(root, 'leftImg8bit', 'val', 'frankfurt', 'frankfurt_000000_000019_leftImg8bit.png')
    os.remove(image)
    with pytest.raises(DataError, match=r'labels in .*gtFine/val have no image .*frankfurt_000000_000019'):
        check_cityscapes_layout(root, counts)
    shutil.rmtree(osp.join(root, 'gtFine', 'val'))
    with pytest.raises(MissingFileError, match=r'gtFine/val is missing: .*gtFine_trainvaltest\.zip'):
        check_cityscapes_layout(root, counts)
    with pytest.raises(MissingFileError, match='missing'):
        check_cityscapes_layout(str(tmp_path / 'nowhere'), counts)
    with pytest.raises(MissingFileError, match=r'gtFine/val is missing'):
        convert_cityscapes(root)


def test_cityscapes_check_refuses_label_ids_under_the_train_id_name(tmp_path):
    root = str(tmp_path / 'cityscapes')
    counts = _cityscapes_release(root)
    for dirpath, _, names in os.walk(osp.join(root, 'gtFine')):
        for name in names:
            if name.endswith('_labelIds.png'):  # copied, not converted
                shutil.copy(osp.join(dirpath, name), osp.join(dirpath, name.replace('labelIds', 'labelTrainIds')))
    with pytest.raises(DataError, match=r'aachen_000000_000019_gtFine_labelTrainIds\.png holds label values '
                                        r'\[19, 20, .*not Cityscapes train ids'):
        check_cityscapes_layout(root, counts)


def test_mmseg_cityscapes_dataset_and_our_pipelines_read_the_converted_fixture(tmp_path):
    from mmseg.datasets import CityscapesDataset
    from mmseg.datasets.transforms import LoadAnnotations
    root = str(tmp_path / 'cityscapes')
    counts = _cityscapes_release(root)
    convert_cityscapes(root)
    dataset = CityscapesDataset(data_root=root, pipeline=[],
                                data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'))
    assert len(dataset) == counts['train']
    info = dataset.get_data_info(1)
    assert info['seg_map_path'].endswith('aachen_000001_000019_gtFine_labelTrainIds.png')
    loaded = LoadAnnotations()(dict(info, seg_fields=[]))['gt_seg_map']
    ids = _read(info['seg_map_path'].replace('labelTrainIds', 'labelIds'))
    assert loaded[ids == 26].tolist() == [13] * int((ids == 26).sum())  # car
    assert np.array_equal(loaded, _read(info['seg_map_path']))
    _run_test_pipeline('cityscapes_512x1024.py', root, num_classes=19)


# ---------------------------------------------------------------------------------------------------------------------
# COCO-Stuff-164k

# From the COCO-Stuff labels (things 0-90 with the 11 unused ids, stuff 91-181), independently of seg_sets.py.
COCO_KNOWN = [(0, 0), (10, 10), (11, 255), (12, 11), (24, 23), (25, 255), (26, 24), (28, 255), (29, 255), (30, 26),
              (90, 255), (91, 80), (181, 170), (255, 255)]


def _mmseg_coco_stuff_table():
    """clsID_to_trID of mmseg's own converter (installed with mmseg under .mim/tools)."""
    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'dataset_converters', 'coco_stuff164k.py')
    if not osp.isfile(path):
        pytest.skip(f"mmseg's converter is not installed at {path}")
    spec = importlib.util.spec_from_file_location('mmseg_coco_stuff164k', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.clsID_to_trID


def test_coco_stuff_table_is_mmseg_converters():
    table = _mmseg_coco_stuff_table()
    assert {k: v for k, v in table.items() if k != 255} == COCO_STUFF_ID_TO_TRAINID
    assert len(COCO_STUFF_ID_TO_TRAINID) == 171 and sorted(COCO_STUFF_ID_TO_TRAINID.values()) == list(range(171))


def test_coco_stuff_release_is_told_to_convert_then_converts_and_passes(tmp_path):
    root = str(tmp_path / 'coco_stuff164k')
    counts = _coco_stuff_release(root)
    with pytest.raises(DataError, match=r'000000000009_labelTrainIds\.png.*prepare_data.py coco_stuff164k --root .* '
                                        r'--convert'):
        check_coco_stuff164k_layout(root, counts)
    assert convert_coco_stuff164k(root) == dict(train2017=dict(written=3, skipped=0),
                                                val2017=dict(written=1, skipped=0))
    assert check_coco_stuff164k_layout(root, counts) == counts
    original = osp.join(root, 'annotations', 'train2017', '000000000025.png')
    ids, train_ids = _read(original), _read(original.replace('.png', '_labelTrainIds.png'))
    for label_id, train_id in COCO_KNOWN:
        assert (ids == label_id).any(), label_id
        assert (train_ids[ids == label_id] == train_id).all(), (label_id, train_id)
    assert sorted(np.unique(train_ids).tolist()) == list(range(171)) + [255]
    # Idempotent, and the train-id files are never taken for originals.
    assert convert_coco_stuff164k(root) == dict(train2017=dict(written=0, skipped=3),
                                                val2017=dict(written=0, skipped=1))
    assert not [n for n in os.listdir(osp.dirname(original)) if 'labelTrainIds_labelTrainIds' in n]


def test_coco_stuff_check_names_what_is_wrong(tmp_path):
    root = str(tmp_path / 'coco_stuff164k')
    counts = _coco_stuff_release(root)
    convert_coco_stuff164k(root)
    with pytest.raises(DataError, match=r'images/train2017 holds 3 images with labels, COCO-Stuff-164k has 118287'):
        check_coco_stuff164k_layout(root)
    label = osp.join(root, 'annotations', 'val2017', '000000000139_labelTrainIds.png')
    os.remove(label)
    os.remove(label.replace('_labelTrainIds', ''))
    with pytest.raises(DataError, match=r'have no label in .*annotations/val2017, e\.g\. .*000000000139\.jpg'):
        check_coco_stuff164k_layout(root, counts)
    shutil.rmtree(osp.join(root, 'images', 'val2017'))
    with pytest.raises(MissingFileError, match=r'images/val2017 is missing: .*val2017\.zip'):
        check_coco_stuff164k_layout(root, counts)


def test_mmseg_coco_stuff_dataset_and_our_pipelines_read_the_converted_fixture(tmp_path):
    from mmseg.datasets import COCOStuffDataset
    root = str(tmp_path / 'coco_stuff164k')
    counts = _coco_stuff_release(root)
    convert_coco_stuff164k(root)
    dataset = COCOStuffDataset(data_root=root, pipeline=[],
                               data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017'))
    assert len(dataset) == counts['train2017']
    assert dataset.get_data_info(0)['seg_map_path'].endswith('000000000009_labelTrainIds.png')
    _run_test_pipeline('coco_stuff164k_512x512.py', root, num_classes=171)


# ---------------------------------------------------------------------------------------------------------------------
# Pascal Context 59


def test_pascal_context_check_passes_and_names_what_is_wrong(tmp_path):
    root = str(tmp_path / 'VOC2010')
    counts = _pascal_context_converted(root)
    assert check_pascal_context_layout(root, counts) == counts
    with pytest.raises(DataError, match=r'train\.txt lists 2 images, mmseg\'s Pascal Context train split has 4996'):
        check_pascal_context_layout(root)

    label = osp.join(root, 'SegmentationClassContext', '2008_000007.png')
    os.rename(label, label + '.bak')
    with pytest.raises(DataError, match=r'lists 2008_000007 but its label .*2008_000007\.png is missing: .*'
                                        r'tools/dataset_converters/pascal_context\.py'):
        check_pascal_context_layout(root, counts)
    os.rename(label + '.bak', label)
    image = osp.join(root, 'JPEGImages', '2008_000008.jpg')
    os.rename(image, image + '.bak')
    with pytest.raises(DataError, match=r'lists 2008_000008 but .*JPEGImages/2008_000008\.jpg is missing'):
        check_pascal_context_layout(root, counts)
    os.rename(image + '.bak', image)
    with open(osp.join(root, 'ImageSets', 'SegmentationContext', 'val.txt'), 'a') as f:
        f.write('2008_000002\n')
    with pytest.raises(DataError, match=r'1 names are in both the train and the val split, e\.g\. 2008_000002'):
        check_pascal_context_layout(root, counts)

    os.remove(osp.join(root, 'ImageSets', 'SegmentationContext', 'val.txt'))
    with pytest.raises(MissingFileError, match=r'val\.txt is missing: .*Detail API.*pascal_context\.py '
                                               r'VOCdevkit VOCdevkit/VOC2010/trainval_merged\.json'):
        check_pascal_context_layout(root, counts)
    shutil.rmtree(osp.join(root, 'SegmentationClassContext'))  # a plain VOC2010 download
    with pytest.raises(MissingFileError, match=r'SegmentationClassContext is missing: .*Detail API'):
        check_pascal_context_layout(root, counts)


def test_pascal_context_check_refuses_unreduced_labels(tmp_path):
    root = str(tmp_path / 'VOC2010')
    counts = _pascal_context_converted(root)
    _write(osp.join(root, 'SegmentationClassContext', '2008_000002.png'), _labels([0, 60, 200]))
    with pytest.raises(DataError, match=r'2008_000002\.png holds label values \[60, 200\] above 59'):
        check_pascal_context_layout(root, counts)


def test_mmseg_pascal_context59_dataset_and_our_pipelines_read_the_fixture(tmp_path):
    from mmseg.datasets import PascalContextDataset59
    from mmseg.datasets.transforms import LoadAnnotations
    root = str(tmp_path / 'VOC2010')
    counts = _pascal_context_converted(root)
    dataset = PascalContextDataset59(data_root=root, pipeline=[], ann_file='ImageSets/SegmentationContext/val.txt',
                                     data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'))
    assert len(dataset) == counts['val']
    info = dataset.get_data_info(0)
    loaded = LoadAnnotations()(dict(info, seg_fields=[]))['gt_seg_map']
    raw = _read(info['seg_map_path'])
    # reduce_zero_label: background 0 -> 255, classes 1-59 -> 0-58.
    assert np.array_equal(loaded, np.where(raw == 0, 255, raw.astype(np.int64) - 1))
    _run_test_pipeline('pascal_context59_480x480.py', root, num_classes=59)


# ---------------------------------------------------------------------------------------------------------------------
# our base configs' test pipelines (CheckSegAnnotation with the set's class count and label convention)


def _run_test_pipeline(base_config, root, num_classes):
    """One sample through the base config's test pipeline (the image's size, labels in range) and one through its
    training pipeline behind CheckedDataset (a random crop, labels in range)."""
    from mmseg.registry import DATASETS
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets', base_config))
    for pipeline in (cfg.train_pipeline, cfg.test_pipeline):
        assert [t['num_classes'] for t in pipeline if t['type'] == 'CheckSegAnnotation'] == [num_classes]
    train_cfg = cfg.train_dataloader.dataset.to_dict()
    train_cfg['dataset']['data_root'] = root
    with DefaultScope.overwrite_default_scope('mmseg'):
        val_set = DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=root))
        train_set = DATASETS.build(train_cfg)
    assert type(train_set).__name__ == 'CheckedDataset'
    for dataset, size in ((val_set, (H, W)), (train_set, None)):
        labels = dataset[0]['data_samples'].gt_sem_seg.data
        assert size is None or labels.shape[-2:] == size
        assert ((labels < num_classes) | (labels == 255)).all()
        assert (labels < num_classes).any()


# ---------------------------------------------------------------------------------------------------------------------
# tools/prepare_data.py


def _load_prepare_data():
    spec = importlib.util.spec_from_file_location('prepare_data', osp.join(ROOT, 'tools', 'prepare_data.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_data_converts_and_checks(tmp_path, monkeypatch, capsys):
    main = _load_prepare_data().main
    root = str(tmp_path / 'cityscapes')
    counts = _cityscapes_release(root)
    with pytest.raises(SystemExit) as exit_info:
        main(['cityscapes', '--root', root])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('ValueError: ') and '\n' not in err and '--convert' in err, err
    with pytest.raises(SystemExit):  # converted, then refused by the official counts
        main(['cityscapes', '--root', root, '--convert', '--workers', '2'])
    assert 'Cityscapes has 2975' in capsys.readouterr().err
    for split, count in counts.items():  # the tool checks against the official counts: make them the fixture's
        monkeypatch.setitem(seg_sets.CITYSCAPES_COUNTS, split, count)
    main(['cityscapes', '--root', root, '--convert'])
    out = capsys.readouterr().out
    assert 'train: wrote 0 train-id label maps, 3 already there' in out
    assert f'{root}: 3 train, 1 val image/label pairs, as cityscapes should have' in out

    voc = str(tmp_path / 'VOC2010')
    _pascal_context_converted(voc)
    with pytest.raises(SystemExit):
        main(['pascal_context', '--root', voc])
    assert "Pascal Context train split has 4996" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no conversion of ours for Pascal Context
        main(['pascal_context', '--root', voc, '--convert'])
