"""cosub_seg/datasets/transfer.py (and ``tools/prepare_data.py`` cifar10 ... inat2019, configs/_base_/datasets/ of
the transfer sets): each reader on a tiny fixture in the official release format written here (CIFAR pickles as
Python 2's cPickle wrote them, .mat files through scipy.io.savemat, iNat json): counts, labels (1-based -> 0-based),
class names, one image pixel for pixel; the restricted unpickler's refusals; the layout checks against given counts
(missing files, wrong counts); the prepare_data subcommands in-process; one sample through each base config's
pipelines (3x224x224). Fast."""
import importlib.util
import io
import json
import os
import os.path as osp
import pickle
import struct

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cosub_seg.datasets import (CIFAR10Dataset, CIFAR100Dataset, Flowers102Dataset, INaturalistDataset,
                                PackClsInputs, StanfordCarsDataset)
from cosub_seg.datasets.transfer import (FLOWERS102_CLASSES, OFFICIAL_COUNTS, check_cifar_layout,
                                         check_flowers102_layout, check_inat_layout, check_stanford_cars_layout,
                                         load_numpy_pickle)
from cosub_seg.errors import ConfigError, DataError, MissingFileError
from cosub_seg.registry import DATASETS, TRANSFORMS
from helpers import Hostile

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CIFAR10_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
PACK = [PackClsInputs()]
LOAD_AND_PACK = [LoadImageFromFile(imdecode_backend='cv2'), PackClsInputs()]


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures in the official formats


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle (protocol 2) wrote for the CIFAR release: str as byte strings (BINSTRING, read
    back as bytes with encoding='bytes'), NumPy 1's module names (numpy.core.multiarray._reconstruct)."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack('<i', n)) + obj)
        self.memoize(obj)
    dispatch[bytes] = save_bytes

    def save_str(self, obj):
        self.save_bytes(obj.encode('latin1'))
    dispatch[str] = save_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace('numpy._core', 'numpy.core')
        self.write(pickle.GLOBAL + module.encode() + b'\n' + (name or obj.__qualname__).encode() + b'\n')
        self.memoize(obj)
    dispatch[type] = save_global


def write_py2_pickle(path, obj):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    with open(path, 'wb') as f:
        f.write(buf.getvalue())


def cifar_rows(images_rgb):
    """The release's rows: 1024 red, 1024 green, 1024 blue values, each plane row-major."""
    return np.stack([np.concatenate([img[..., c].ravel() for c in range(3)]) for img in images_rgb]).astype(np.uint8)


def write_cifar(root, variant='cifar10', per_file=2, n_test=3, seed=0):
    """The python release of CIFAR-10 (5 training batches) or CIFAR-100 (one 'train' file), with the official number
    of class names. Returns the training and test images (RGB, HxWx3), labels and class names written."""
    rng = np.random.default_rng(seed)
    n_classes = 10 if variant == 'cifar10' else 100
    names = CIFAR10_NAMES if variant == 'cifar10' else [f'fine_{i}' for i in range(100)]
    folder = osp.join(root, 'cifar-10-batches-py' if variant == 'cifar10' else 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    train_files = [f'data_batch_{i}' for i in range(1, 6)] if variant == 'cifar10' else ['train']
    files = [(name, per_file) for name in train_files] + [('test_batch' if variant == 'cifar10' else 'test', n_test)]
    written = dict(train=([], []), test=([], []))
    for name, n in files:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, n_classes, n)]
        if variant == 'cifar10':
            batch = {'batch_label': 'training batch', 'labels': labels, 'data': cifar_rows(images),
                     'filenames': [f'img_{i}.png' for i in range(n)]}
        else:
            batch = {'filenames': [f'img_{i}.png' for i in range(n)], 'batch_label': 'batch', 'fine_labels': labels,
                     'coarse_labels': [x // 5 for x in labels], 'data': cifar_rows(images)}
        write_py2_pickle(osp.join(folder, name), batch)
        split = 'test' if name in ('test_batch', 'test') else 'train'
        written[split][0].extend(images)
        written[split][1].extend(labels)
    if variant == 'cifar10':
        write_py2_pickle(osp.join(folder, 'batches.meta'),
                         {'num_cases_per_batch': per_file, 'label_names': names, 'num_vis': 3072})
    else:
        write_py2_pickle(osp.join(folder, 'meta'), {'fine_label_names': names,
                                                    'coarse_label_names': [f'coarse_{i}' for i in range(20)]})
    counts = dict(train=len(written['train'][1]), test=len(written['test'][1]), classes=n_classes)
    return written, names, counts


def write_jpg(path, rng, size=(24, 40)):
    """A random JPEG; returns the image a decoder gives back for its bytes (JPEG is lossy)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    ok, data = cv2.imencode('.jpg', rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    assert ok
    with open(path, 'wb') as f:
        f.write(data.tobytes())
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


FLOWERS_LABELS = [3, 1, 102, 3, 1, 102, 1, 3, 102, 50]  # 1-based, images 1..10
FLOWERS_SPLITS = dict(trnid=[2, 1, 3], valid=[5, 4, 6], tstid=[7, 8, 9, 10])


def write_flowers(root, seed=0):
    rng = np.random.default_rng(seed)
    decoded = {i: write_jpg(osp.join(root, 'jpg', f'image_{i:05d}.jpg'), rng)
               for i in range(1, len(FLOWERS_LABELS) + 1)}
    scipy.io.savemat(osp.join(root, 'imagelabels.mat'), {'labels': np.array([FLOWERS_LABELS], dtype=np.float64)})
    scipy.io.savemat(osp.join(root, 'setid.mat'),
                     {key: np.array([ids], dtype=np.uint16) for key, ids in FLOWERS_SPLITS.items()})
    return decoded, dict(train=3, val=3, test=4, classes=4)


def cars_annotations(records, labelled=True):
    """The devkit's 1 x N struct array: bbox_x1, bbox_y1, bbox_x2, bbox_y2, class (1-based, if labelled), fname."""
    fields = ['bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2'] + (['class'] if labelled else []) + ['fname']
    annotations = np.zeros((1, len(records)), dtype=[(field, 'O') for field in fields])
    for i, (label, fname) in enumerate(records):
        box = (np.uint16(1), np.uint16(2), np.uint16(30), np.uint16(20))
        annotations[0, i] = box + ((np.uint8(label),) if labelled else ()) + (fname,)
    return annotations


def write_cars(root, n_classes=3, test_labels_in_devkit=False, seed=0):
    """The devkit release: 3 training and 2 test images of classes 1..n_classes (1-based)."""
    rng = np.random.default_rng(seed)
    names = [f'Car Maker Model {i} 2012' for i in range(1, n_classes + 1)]
    os.makedirs(osp.join(root, 'devkit'))
    scipy.io.savemat(osp.join(root, 'devkit', 'cars_meta.mat'),
                     {'class_names': np.array(names, dtype=object).reshape(1, -1)})
    train = [(n_classes, '00001.jpg'), (1, '00002.jpg'), (2, '00003.jpg')]
    test = [(2, '00001.jpg'), (n_classes, '00002.jpg')]
    scipy.io.savemat(osp.join(root, 'devkit', 'cars_train_annos.mat'), {'annotations': cars_annotations(train)})
    scipy.io.savemat(osp.join(root, 'devkit', 'cars_test_annos.mat'),  # the devkit's own: no classes
                     {'annotations': cars_annotations(test, labelled=False)})
    labelled = osp.join(root, 'devkit' if test_labels_in_devkit else '', 'cars_test_annos_withlabels.mat')
    scipy.io.savemat(labelled, {'annotations': cars_annotations(test)})
    decoded = {('train', f): write_jpg(osp.join(root, 'cars_train', f), rng) for _, f in train}
    decoded.update({('test', f): write_jpg(osp.join(root, 'cars_test', f), rng) for _, f in test})
    return names, decoded, dict(train=3, test=2, classes=n_classes)


def inat_category(i, year):
    category = dict(id=i, name=f'species {i}', kingdom='Animalia', phylum='Chordata', **{'class': 'Aves'},
                    order='Passeriformes', family=f'family {i % 2}', genus=f'genus {i // 2}')
    if year == 2018:
        category['supercategory'] = 'Aves'
    return category


def write_inat(root, year=2018, train_categories=(5, 2, 5, 0, 3), val_categories=(2, 0), n_categories=6,
               seed=0, images=True):
    """train{year}.json / val{year}.json with one image per entry of ``*_categories`` (annotations in that order),
    ``n_categories`` categories, and the images under train_val{year}/Aves/<category id>/."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    categories = [inat_category(i, year) for i in range(n_categories)]
    decoded = {}
    for split, cats in (('train', train_categories), ('val', val_categories)):
        offset = 0 if split == 'train' else 100000
        files = [f'train_val{year}/Aves/{c}/{split}_{i:06d}.jpg' for i, c in enumerate(cats)]
        data = dict(info=dict(year=year), licenses=[], categories=categories,
                    images=[dict(id=offset + i, file_name=f, width=40, height=24, license=0)
                            for i, f in enumerate(files)],
                    annotations=[dict(id=offset + i, image_id=offset + i, category_id=c) for i, c in enumerate(cats)])
        with open(osp.join(root, f'{split}{year}.json'), 'w') as f:
            json.dump(data, f)
        if images:
            decoded[split] = [write_jpg(osp.join(root, name), rng) for name in files]
        elif split == 'train':  # the first image only
            decoded[split] = [write_jpg(osp.join(root, files[0]), rng)]
    return decoded, dict(train=len(train_categories), val=len(val_categories), classes=len(set(train_categories)))


@pytest.fixture
def cifar10(tmp_path):
    root = str(tmp_path / 'cifar10')
    return (root, *write_cifar(root))


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_reads_the_pickles_as_bgr_images_with_labels_and_names(cifar10):
    root, written, names, _ = cifar10
    for split in ('train', 'test'):
        ds = CIFAR10Dataset(data_root=root, split=split, num_classes=10, pipeline=PACK)
        images, labels = written[split]
        assert len(ds) == len(labels) == (10 if split == 'train' else 3)
        assert ds.metainfo['classes'] == tuple(names)
        assert [ds.get_data_info(i)['gt_label'] for i in range(len(ds))] == labels
        # An image of the third batch file: planar RGB rows -> H x W x BGR, pixel for pixel.
        index = 5 if split == 'train' else 2
        info = ds.get_data_info(index)
        assert info['img'].dtype == np.uint8 and info['img'].shape == (32, 32, 3)
        np.testing.assert_array_equal(info['img'], images[index][..., ::-1])
        packed = ds[index]
        assert torch.equal(packed['inputs'], torch.from_numpy(np.ascontiguousarray(
            images[index][..., ::-1].transpose(2, 0, 1))))
        assert packed['data_samples'].gt_label.tolist() == [labels[index]]
        assert 'img_path' not in info


def test_cifar100_reads_the_fine_labels(tmp_path):
    root = str(tmp_path / 'cifar100')
    written, names, counts = write_cifar(root, 'cifar100', per_file=4, n_test=2, seed=1)
    ds = CIFAR100Dataset(data_root=root, split='train', pipeline=PACK)
    assert len(ds) == 4 and ds.metainfo['classes'] == tuple(names) and len(names) == 100
    assert [ds.get_data_info(i)['gt_label'] for i in range(4)] == written['train'][1]
    np.testing.assert_array_equal(ds.get_data_info(3)['img'], written['train'][0][3][..., ::-1])
    assert check_cifar_layout(root, 'cifar100', expected=counts) == counts


def test_cifar_refuses_another_num_classes_and_split(cifar10):
    root = cifar10[0]
    with pytest.raises(ConfigError, match='num_classes=100.*10 classes'):
        CIFAR10Dataset(data_root=root, split='train', num_classes=100)
    with pytest.raises(ConfigError, match="split must be one of .*'val'"):
        CIFAR10Dataset(data_root=root, split='val')


@pytest.mark.parametrize('payload', ['os.system', 'open'])
def test_the_unpickler_refuses_any_other_global_naming_the_file(cifar10, tmp_path, payload):
    root = cifar10[0]
    meta = osp.join(root, 'cifar-10-batches-py', 'batches.meta')
    marker = tmp_path / 'ran'

    class RunsCode:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    evil = RunsCode() if payload == 'os.system' else Hostile(str(marker))
    with open(meta, 'wb') as f:
        pickle.dump({b'label_names': [b'x'] * 10, b'extra': evil}, f, protocol=4)
    expected = r'posix\.system|nt\.system' if payload == 'os.system' else r'(builtins|io)\.open'
    with pytest.raises(DataError, match=rf'{meta} asks for the global ({expected}), and is refused'):
        CIFAR10Dataset(data_root=root, split='test')
    assert not marker.exists()


def test_a_truncated_or_missing_pickle_is_named(cifar10):
    root = cifar10[0]
    path = osp.join(root, 'cifar-10-batches-py', 'test_batch')
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(DataError, match=f'{path} is not a readable pickle.*cifar-10-python.tar.gz'):
        load_numpy_pickle(path, 'download cifar-10-python.tar.gz')
    os.remove(path)
    with pytest.raises(MissingFileError, match=f'expected {path}: download cifar-10-python.tar.gz'):
        CIFAR10Dataset(data_root=root, split='test')


def test_cifar_layout_check(cifar10):
    root, _, _, counts = cifar10
    assert check_cifar_layout(root, 'cifar10', expected=counts) == dict(train=10, test=3, classes=10)
    with pytest.raises(DataError, match='10 images in the train split, CIFAR-10 has 50000'):
        check_cifar_layout(root, 'cifar10')  # the official counts
    os.remove(osp.join(root, 'cifar-10-batches-py', 'data_batch_3'))
    with pytest.raises(MissingFileError, match=r'data_batch_3: download cifar-10-python.tar.gz .* unpack it in'):
        check_cifar_layout(root, 'cifar10', expected=counts)


# ---------------------------------------------------------------------------------------------------------------------
# Flowers-102


def test_flowers102_splits_labels_and_images(tmp_path):
    root = str(tmp_path / 'flowers102')
    decoded, counts = write_flowers(root)
    ds = Flowers102Dataset(data_root=root, split='train', num_classes=102, pipeline=LOAD_AND_PACK)
    assert ds.metainfo['classes'] == FLOWERS102_CLASSES and len(FLOWERS102_CLASSES) == 102
    assert [osp.basename(ds.get_data_info(i)['img_path']) for i in range(3)] == \
        ['image_00002.jpg', 'image_00001.jpg', 'image_00003.jpg']
    assert [ds.get_data_info(i)['gt_label'] for i in range(3)] == [0, 2, 101]  # 1-based labels 1, 3, 102
    packed = ds[0]
    assert torch.equal(packed['inputs'], torch.from_numpy(decoded[2].transpose(2, 0, 1).copy()))
    assert packed['data_samples'].gt_label.tolist() == [0]
    sizes = {split: len(Flowers102Dataset(data_root=root, split=split, lazy_init=False))
             for split in ('val', 'test', 'trainval')}
    assert sizes == dict(val=3, test=4, trainval=6)
    trainval = Flowers102Dataset(data_root=root, split='trainval')  # train, then val
    assert [osp.basename(trainval.get_data_info(i)['img_path'])[6:11] for i in range(6)] == \
        ['00002', '00001', '00003', '00005', '00004', '00006']
    assert [trainval.get_data_info(i)['gt_label'] for i in range(6)] == [0, 2, 101, 0, 2, 101]
    assert check_flowers102_layout(root, expected=counts) == counts


def test_flowers102_errors_name_the_file_and_the_download(tmp_path):
    root = str(tmp_path / 'flowers102')
    _, counts = write_flowers(root)
    with pytest.raises(DataError, match=r'3 images in the train split, Flowers-102 has 1020'):
        check_flowers102_layout(root)
    os.remove(osp.join(root, 'jpg', 'image_00008.jpg'))
    with pytest.raises(MissingFileError, match=r'1 of the 10 images that .*setid.mat lists do not exist, e.g. '
                                               r'.*image_00008.jpg: download 102flowers.tgz'):
        check_flowers102_layout(root, expected=counts)
    scipy.io.savemat(osp.join(root, 'setid.mat'), {'trnid': np.array([[1]]), 'valid': np.array([[2]])})
    with pytest.raises(DataError, match=r"setid.mat has no variable 'tstid'"):
        Flowers102Dataset(data_root=root, split='test')
    os.remove(osp.join(root, 'imagelabels.mat'))
    with pytest.raises(MissingFileError, match=rf'expected {root}/imagelabels.mat: download .* Oxford VGG Flowers-102'):
        Flowers102Dataset(data_root=root)


# ---------------------------------------------------------------------------------------------------------------------
# Stanford Cars


@pytest.mark.parametrize('in_devkit', [False, True])
def test_stanford_cars_reads_the_devkit_and_the_labelled_test_annotations(tmp_path, in_devkit):
    root = str(tmp_path / 'stanford_cars')
    names, decoded, counts = write_cars(root, test_labels_in_devkit=in_devkit)
    train = StanfordCarsDataset(data_root=root, split='train', num_classes=3, pipeline=LOAD_AND_PACK)
    assert train.metainfo['classes'] == tuple(names)
    assert [(osp.basename(train.get_data_info(i)['img_path']), train.get_data_info(i)['gt_label'])
            for i in range(3)] == [('00001.jpg', 2), ('00002.jpg', 0), ('00003.jpg', 1)]
    test = StanfordCarsDataset(data_root=root, split='test', pipeline=LOAD_AND_PACK)
    assert [test.get_data_info(i)['gt_label'] for i in range(2)] == [1, 2]
    item = test[1]
    assert torch.equal(item['inputs'], torch.from_numpy(decoded[('test', '00002.jpg')].transpose(2, 0, 1).copy()))
    assert check_stanford_cars_layout(root, expected=counts) == counts


def test_stanford_cars_errors(tmp_path):
    root = str(tmp_path / 'stanford_cars')
    _, _, counts = write_cars(root)
    with pytest.raises(DataError, match=r'3 classes, Stanford Cars has 196'):
        check_stanford_cars_layout(root, expected=dict(counts, classes=196))
    os.remove(osp.join(root, 'cars_train', '00002.jpg'))
    with pytest.raises(MissingFileError, match=r'cars_train_annos.mat lists do not exist, e.g. .*cars_train/00002'):
        check_stanford_cars_layout(root, expected=counts)
    os.remove(osp.join(root, 'cars_test_annos_withlabels.mat'))
    with pytest.raises(MissingFileError, match=r'expected .*stanford_cars/cars_test_annos_withlabels.mat or '
                                               r'.*devkit/cars_test_annos_withlabels.mat \(.*has no labels'):
        StanfordCarsDataset(data_root=root, split='test')
    scipy.io.savemat(osp.join(root, 'devkit', 'cars_train_annos.mat'),
                     {'annotations': cars_annotations([(4, '00001.jpg')])})
    with pytest.raises(DataError, match=r'class 4 of 00001.jpg is outside 1-3'):
        StanfordCarsDataset(data_root=root, split='train')


# ---------------------------------------------------------------------------------------------------------------------
# iNaturalist


def test_inat_labels_follow_deit_first_appearance_in_the_training_annotations(tmp_path):
    root = str(tmp_path / 'inat2018')
    decoded, counts = write_inat(root)  # train categories 5, 2, 5, 0, 3; val 2, 0
    train = INaturalistDataset(data_root=root, year=2018, split='train', num_classes=4, pipeline=LOAD_AND_PACK)
    assert train.metainfo['classes'] == ('species 5', 'species 2', 'species 0', 'species 3')
    assert [train.get_data_info(i)['gt_label'] for i in range(5)] == [0, 1, 0, 2, 3]
    assert train.get_data_info(1)['img_path'] == osp.join(root, 'train_val2018/Aves/2/train_000001.jpg')
    assert torch.equal(train[1]['inputs'], torch.from_numpy(decoded['train'][1].transpose(2, 0, 1).copy()))
    val = INaturalistDataset(data_root=root, year=2018, split='val')
    assert val.metainfo['classes'] == train.metainfo['classes']
    assert [val.get_data_info(i)['gt_label'] for i in range(2)] == [1, 2]
    # Another taxonomic level: genus i // 2 -> genus 2, 1, 0 in order of appearance.
    genus = INaturalistDataset(data_root=root, year=2018, split='val', category='genus')
    assert genus.metainfo['classes'] == ('genus 2', 'genus 1', 'genus 0')
    assert [genus.get_data_info(i)['gt_label'] for i in range(2)] == [1, 2]
    assert check_inat_layout(root, 2018, expected=counts) == dict(train=5, val=2, classes=4)


def test_inat_prefers_the_unobfuscated_categories_json(tmp_path):
    root = str(tmp_path / 'inat2018')
    write_inat(root, images=False)
    with open(osp.join(root, 'categories.json'), 'w') as f:
        json.dump([dict(inat_category(i, 2018), name=f'Real name {i}') for i in range(6)], f)
    ds = INaturalistDataset(data_root=root, year=2018, split='train')
    assert ds.metainfo['classes'] == ('Real name 5', 'Real name 2', 'Real name 0', 'Real name 3')


def test_inat_errors(tmp_path):
    root = str(tmp_path / 'inat2019')
    _, counts = write_inat(root, year=2019)
    with pytest.raises(DataError, match=r"categories have no 'supercategory'"):
        INaturalistDataset(data_root=root, year=2019, split='train', category='supercategory')
    with pytest.raises(ConfigError, match='num_classes=1010, but .* names 4 classes'):
        INaturalistDataset(data_root=root, year=2019, split='train', num_classes=1010)
    with pytest.raises(DataError, match=r'5 images in the train split, iNaturalist 2019 has 265213'):
        check_inat_layout(root, 2019)
    os.remove(osp.join(root, 'train_val2019/Aves/0/val_000001.jpg'))
    with pytest.raises(MissingFileError, match=r'val2019.json lists do not exist, e.g. .*val_000001.jpg: download '
                                               r'train_val2019.tar.gz'):
        check_inat_layout(root, 2019, expected=counts)
    write_inat(root, year=2019, val_categories=(4,), images=False)  # category 4 has no training image
    with pytest.raises(DataError, match=r"val2019.json: .* is of name 'species 4', which no training image"):
        INaturalistDataset(data_root=root, year=2019, split='val')
    os.remove(osp.join(root, 'val2019.json'))
    with pytest.raises(MissingFileError, match=rf'expected {root}/val2019.json: download .*val2019.json.tar.gz'):
        INaturalistDataset(data_root=root, year=2019, split='val')


# ---------------------------------------------------------------------------------------------------------------------
# tools/prepare_data.py


def load_prepare_data():
    spec = importlib.util.spec_from_file_location('prepare_data', osp.join(ROOT, 'tools', 'prepare_data.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURES = {
    'cifar10': lambda root: write_cifar(root)[2],
    'cifar100': lambda root: write_cifar(root, 'cifar100')[2],
    'flowers102': lambda root: write_flowers(root)[1],
    'stanford_cars': lambda root: write_cars(root)[2],
    'inat2018': lambda root: write_inat(root)[1],
    'inat2019': lambda root: write_inat(root, year=2019)[1],
}


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_prepare_data_checks_a_download(tmp_path, monkeypatch, capsys, name):
    root = str(tmp_path / name)
    os.makedirs(root)
    counts = FIXTURES[name](root)
    main = load_prepare_data().main
    with pytest.raises(SystemExit) as exit_info:  # the official counts: refused in one line
        main([name, '--root', root])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    official = OFFICIAL_COUNTS[name]
    assert err.startswith('ValueError: ') and '\n' not in err and f'has {official["train"]} (' in err, err
    monkeypatch.setitem(OFFICIAL_COUNTS, name, counts)
    main([name, '--root', root])
    out = capsys.readouterr().out
    splits = ', '.join(f'{n} {split}' for split, n in counts.items() if split != 'classes')
    assert out.strip().startswith(f'{root}: {splits}, {counts["classes"]} classes, as '), out


# ---------------------------------------------------------------------------------------------------------------------
# configs/_base_/datasets/


def config_fixture(name, root):
    """A fixture with the official number of classes (the configs' official_classes)."""
    if name.startswith('cifar'):
        write_cifar(root, name, per_file=1, n_test=1)
    elif name == 'flowers102':
        write_flowers(root)
    elif name == 'stanford_cars':
        write_cars(root, n_classes=196)
    else:
        year = int(name[-4:])
        n = OFFICIAL_COUNTS[name]['classes']
        write_inat(root, year=year, train_categories=range(n), val_categories=(0,), n_categories=n, images=False)
        rng = np.random.default_rng(0)
        write_jpg(osp.join(root, f'train_val{year}/Aves/0/val_000000.jpg'), rng)


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_base_config_pipelines_give_224_inputs(tmp_path, name):
    root = str(tmp_path / name)
    os.makedirs(root)
    config_fixture(name, root)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'datasets', f'{name}.py'))
    assert cfg.official_classes == OFFICIAL_COUNTS[name]['classes']
    assert cfg.train_dataloader.dataset.type == 'CheckedDataset'
    assert cfg.train_dataloader.sampler.type == 'ReproducibleSampler'
    assert cfg.val_evaluator == dict(type='Accuracy', topk=(1, 5))
    train_cfg = cfg.train_dataloader.dataset.dataset
    assert [step['type'] for step in train_cfg.pipeline][-4:] == \
        ['RandomResizedCrop', 'RandomFlip', 'TimmRandAugment', 'PackClsInputs']
    if 'TimmRandAugment' not in TRANSFORMS:  # the transform may land after this file
        train_cfg.pipeline = [step for step in train_cfg.pipeline if step['type'] != 'TimmRandAugment']
    loads = [step['type'] == 'LoadImageFromFile' for step in train_cfg.pipeline + cfg.val_dataloader.dataset.pipeline]
    assert not any(loads) if name.startswith('cifar') else sum(loads) == 2
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        for dataset_cfg in (train_cfg, cfg.val_dataloader.dataset):
            dataset = DATASETS.build(dict(dataset_cfg, data_root=root))
            assert len(dataset.metainfo['classes']) == cfg.official_classes
            sample = dataset[0]
            assert sample['inputs'].shape == (3, 224, 224) and sample['inputs'].dtype == torch.uint8
            assert 0 <= int(sample['data_samples'].gt_label) < cfg.official_classes
