"""Classification transfer datasets read from their official release files, as downloaded and unpacked.

* CIFAR-10 / CIFAR-100: the python-pickle release (https://www.cs.toronto.edu/~kriz/cifar.html). The images live in
  the pickles, so the data list holds them (``img``, HxWx3 uint8 BGR as OpenCV loads) and the pipeline starts
  without ``LoadImageFromFile``. The pickles are read with an unpickler that rebuilds only NumPy arrays (and the
  dicts, lists and byte strings around them): any other global in the file is refused, since unpickling it could
  run code.
* Oxford Flowers-102 (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/): ``jpg/``, ``imagelabels.mat``,
  ``setid.mat``.
* Stanford Cars: the devkit release (``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``, ``cars_train/``,
  ``cars_test/``) and the test labels ``cars_test_annos_withlabels.mat``, at the root (torchvision's place) or in
  ``devkit/``.
* iNaturalist 2018 / 2019 (https://github.com/visipedia/inat_comp): ``{train,val}{year}.json`` (COCO-like) and the
  images under ``train_val{year}/``. Labels follow the DeiT authors' ``INatDataset`` (facebookresearch/deit,
  datasets.py): the classes are the values of one taxonomic level (``category``, default ``'name'``: the species)
  in the order they first appear in the training annotations, for both splits, so a head fine-tuned with DeiT's
  code has the same class order. ``categories.json`` (the un-obfuscated names the organisers released later) is
  used where it lies next to the json files, as DeiT does; otherwise the json files' own ``categories``.

Each dataset has the data-list items of :class:`~cosub_seg.datasets.ImageFolderDataset` (``img_path`` or ``img``,
and ``gt_label`` counted from 0), the official class names in ``metainfo['classes']``, and refuses a ``num_classes``
that differs from their count. ``check_*_layout`` verify a download against the official counts
(``OFFICIAL_COUNTS``; ``tools/prepare_data.py <name>`` runs them). See data/README.md for the layouts.
"""
import json
import os.path as osp
import pickle
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset

from ..errors import ConfigError, DataError, MissingFileError, UserError
from ..registry import DATASETS

# The official number of images per split and of classes. CIFAR: the CIFAR page (50,000 training and 10,000 test
# images); Flowers-102: the Oxford VGG page (10 training and 10 validation images per class, 6,149 test images);
# Stanford Cars: the dataset page (8,144 training and 8,041 test images of 196 classes); iNat: the organisers'
# READMEs (github.com/visipedia/inat_comp, 2018/ and 2019/: 2018 has 437,513 train and 24,426 val images of 8,142
# species; 2019 has 268,243 train + val images of 1,010 species, of which 265,213 train as Kaggle's page lists).
OFFICIAL_COUNTS: Dict[str, Dict[str, int]] = {
    'cifar10': dict(train=50000, test=10000, classes=10),
    'cifar100': dict(train=50000, test=10000, classes=100),
    'flowers102': dict(train=1020, val=1020, test=6149, classes=102),
    'stanford_cars': dict(train=8144, test=8041, classes=196),
    'inat2018': dict(train=437513, val=24426, classes=8142),
    'inat2019': dict(train=265213, val=3030, classes=1010),
}
DEFAULT_ROOTS = {name: f'data/{name}' for name in OFFICIAL_COUNTS}

# ---------------------------------------------------------------------------------------------------------------------
# Shared


class _ReleaseDataset(BaseDataset):
    """A dataset over an official release: a ``split`` chosen from ``SPLITS``, the classes the release names, and an
    optional ``num_classes`` that must agree with them."""

    SPLITS: Tuple[str, ...] = ()

    def __init__(self, data_root: str, split: str, num_classes: Optional[int] = None, **kwargs):
        if split not in self.SPLITS:
            raise ConfigError(f'{type(self).__name__}: split must be one of {self.SPLITS}, got {split!r}')
        self.split = split
        self.num_classes = num_classes
        super().__init__(data_root=data_root, **kwargs)

    def _set_classes(self, classes: Sequence[str], source: str) -> None:
        if self.num_classes is not None and self.num_classes != len(classes):
            raise ConfigError(
                f'{type(self).__name__}: num_classes={self.num_classes}, but {source} names {len(classes)} classes '
                f'({", ".join(map(str, classes[:3]))}, ...): set num_classes (and the head\'s) to {len(classes)}')
        self._metainfo['classes'] = tuple(classes)


def _check_counts(name: str, root: str, counts: Dict[str, int], expected: Dict[str, int], hint: str) -> None:
    for key, count in expected.items():
        if counts.get(key) != count:
            what = 'classes' if key == 'classes' else f'images in the {key} split'
            raise DataError(f'{root}: {counts.get(key)} {what}, {name} has {count} ({_count_line(counts)} found): the '
                            f'download is incomplete, mixed with other files or another release; {hint}')


def _count_line(counts: Dict[str, int]) -> str:
    splits = ', '.join(f'{n} {key}' for key, n in counts.items() if key != 'classes')
    return f'{splits}, {counts["classes"]} classes'


def _missing_images(paths: Sequence[str], where: str, hint: str) -> None:
    missing = [path for path in paths if not osp.isfile(path)]
    if missing:
        raise MissingFileError(f'{len(missing)} of the {len(paths)} images that {where} lists do not exist, e.g. '
                               f'{missing[0]}: {hint}')


def _load_mat(path: str, keys: Sequence[str], hint: str) -> dict:
    """A MATLAB file's variables (scipy.io.loadmat, squeezed), which must include ``keys``."""
    if not osp.isfile(path):
        raise MissingFileError(f'expected {path}: {hint}')
    from scipy.io import loadmat
    try:
        mat = loadmat(path, squeeze_me=True)
    except Exception as err:  # noqa: BLE001  scipy raises several kinds for a file that is not a .mat
        raise DataError(f'{path} is not a readable MATLAB file ({type(err).__name__}: {err}): a truncated download '
                        f'or another file; {hint}') from None
    missing = [key for key in keys if key not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise DataError(f'{path} has no variable {missing[0]!r} (it holds {found}): not the official file; {hint}')
    return mat


def _int_vector(mat: dict, key: str, path: str) -> np.ndarray:
    values = np.atleast_1d(np.asarray(mat[key]))
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number) or not np.all(values == np.round(values)):
        raise DataError(f'{path}: {key!r} should be a vector of whole numbers, got {values.dtype} of shape '
                        f'{values.shape}')
    return values.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR: the python-pickle release


CIFAR_HINT = ('download {archive} (the python version) from https://www.cs.toronto.edu/~kriz/cifar.html and unpack '
              'it in {root} (it makes {folder}/); see data/README.md')
CIFAR_RELEASES = {
    'cifar10': dict(archive='cifar-10-python.tar.gz', folder='cifar-10-batches-py', meta='batches.meta',
                    names_key=b'label_names', labels_key=b'labels',
                    files=dict(train=[f'data_batch_{i}' for i in range(1, 6)], test=['test_batch'])),
    'cifar100': dict(archive='cifar-100-python.tar.gz', folder='cifar-100-python', meta='meta',
                     names_key=b'fine_label_names', labels_key=b'fine_labels',
                     files=dict(train=['train'], test=['test'])),
}


def _numpy_reconstruction_globals() -> Dict[Tuple[str, str], object]:
    """(module, name) -> object of the globals a pickled NumPy array, scalar or dtype needs: those of
    ``cosub_seg.checkpoint``'s weights-only loading, under NumPy 2's and NumPy 1's module names (the CIFAR pickles
    were written by Python 2 with NumPy 1: ``numpy.core.multiarray._reconstruct``)."""
    core = getattr(np, '_core', None) or np.core
    dtype_classes = [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16', 'float32',
        'float64')]
    allowed = {}
    for obj in (core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtype_classes):
        for module in {obj.__module__, obj.__module__.replace('numpy._core', 'numpy.core')}:
            allowed[(module, obj.__name__)] = obj
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, numbers, byte strings and NumPy arrays; refuses any other global (a class or function
    the file names, which unpickling would call) with the file named."""

    def __init__(self, file, path: str, hint: str):
        super().__init__(file, encoding='bytes')  # as the CIFAR page's loader: Python 2's str keys become bytes
        self.path = path
        self.hint = hint
        self.allowed = _numpy_reconstruction_globals()

    def find_class(self, module: str, name: str):
        obj = self.allowed.get((module, name))
        if obj is None:
            raise DataError(f'{self.path} asks for the global {module}.{name}, and is refused: the official file holds '
                            'only dicts, lists and NumPy arrays, and unpickling anything else could run code. It is '
                            f'not the official file; {self.hint}')
        return obj


def load_numpy_pickle(path: str, hint: str = '') -> object:
    """Unpickles ``path`` (``encoding='bytes'``) admitting only NumPy's reconstruction globals. Raises
    :class:`~cosub_seg.errors.MissingFileError` for a missing file and :class:`~cosub_seg.errors.DataError` for an
    unreadable one or one that names any other global; ``hint`` says what to download."""
    if not osp.isfile(path):
        raise MissingFileError(f'expected {path}: {hint}')
    try:
        with open(path, 'rb') as f:
            return _NumpyOnlyUnpickler(f, path, hint).load()
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001  a truncated or foreign file fails in many ways
        raise DataError(f'{path} is not a readable pickle ({type(err).__name__}: {err}): a truncated download or '
                        f'another file; {hint}') from None


def read_cifar(root: str, variant: str, split: str) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """The images (N x 32 x 32 x 3 uint8, BGR), labels (N, int64) and class names of one split of the CIFAR-10 or
    CIFAR-100 python release unpacked in ``root``."""
    release = CIFAR_RELEASES[variant]
    folder = osp.join(root, release['folder'])
    hint = CIFAR_HINT.format(root=root, **release)
    meta_path = osp.join(folder, release['meta'])
    meta = load_numpy_pickle(meta_path, hint)
    if not isinstance(meta, dict) or release['names_key'] not in meta:
        raise DataError(f'{meta_path} has no {release["names_key"]!r} entry: not the {variant} release; {hint}')
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[release['names_key']]]
    images, labels = [], []
    for name in release['files'][split]:
        path = osp.join(folder, name)
        batch = load_numpy_pickle(path, hint)
        for key in (b'data', release['labels_key']):
            if not isinstance(batch, dict) or key not in batch:
                raise DataError(f'{path} has no {key!r} entry: not the {variant} release; {hint}')
        data, batch_labels = np.asarray(batch[b'data']), np.asarray(batch[release['labels_key']], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{path}: b'data' should be N x 3072 uint8 (32x32 RGB planes), got {data.dtype} of "
                            f'shape {data.shape}; {hint}')
        if batch_labels.shape != (len(data),):
            raise DataError(f'{path}: {len(data)} images but {batch_labels.size} labels; {hint}')
        # Each row: 1024 red, 1024 green, 1024 blue values, each plane row-major -> H x W x RGB -> BGR.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)[..., ::-1])
        labels.append(batch_labels)
    labels = np.concatenate(labels)
    bad = labels[(labels < 0) | (labels >= len(classes))]
    if bad.size:
        raise DataError(f'{folder}: label {bad[0]} is outside [0, {len(classes)}) of {meta_path}; {hint}')
    return np.ascontiguousarray(np.concatenate(images)), labels, classes


class _CIFARDataset(_ReleaseDataset):
    VARIANT = ''
    SPLITS = ('train', 'test')

    def __init__(self, data_root: str, split: str = 'train', num_classes: Optional[int] = None, **kwargs):
        super().__init__(data_root=data_root, split=split, num_classes=num_classes, **kwargs)

    def load_data_list(self) -> List[dict]:
        images, labels, classes = read_cifar(self.data_root, self.VARIANT, self.split)
        release = CIFAR_RELEASES[self.VARIANT]
        self._set_classes(classes, osp.join(self.data_root, release['folder'], release['meta']))
        return [dict(img=img, gt_label=int(label), ori_shape=img.shape[:2], img_shape=img.shape[:2])
                for img, label in zip(images, labels)]


@DATASETS.register_module()
class CIFAR10Dataset(_CIFARDataset):
    """CIFAR-10 from ``cifar-10-python.tar.gz`` unpacked in ``data_root`` (``cifar-10-batches-py/``).

    Items hold the image itself (``img``: 32x32x3 uint8 BGR), so the pipeline has no ``LoadImageFromFile``.

    Args:
        data_root: the folder holding ``cifar-10-batches-py/``, e.g. ``data/cifar10``.
        split: 'train' (``data_batch_1`` .. ``5``, 50,000 images) or 'test' (``test_batch``, 10,000).
        num_classes: when given, must equal the number of classes of ``batches.meta`` (10).
        **kwargs: further arguments of :class:`mmengine.dataset.BaseDataset` (``pipeline``, ``test_mode``...).
    """
    VARIANT = 'cifar10'


@DATASETS.register_module()
class CIFAR100Dataset(_CIFARDataset):
    """CIFAR-100 (the 100 fine labels) from ``cifar-100-python.tar.gz`` unpacked in ``data_root``
    (``cifar-100-python/``); as :class:`CIFAR10Dataset`, with splits 'train' (``train``) and 'test' (``test``)."""
    VARIANT = 'cifar100'


def check_cifar_layout(root: str, variant: str = 'cifar10', expected: Optional[Dict[str, int]] = None
                       ) -> Dict[str, int]:
    """Reads every file of the CIFAR-10 (``variant='cifar10'``) or CIFAR-100 release in ``root`` and compares the
    images per split and the classes with ``expected`` (default: the official counts). Returns the counts."""
    expected = OFFICIAL_COUNTS[variant] if expected is None else expected
    counts, classes = {}, []
    for split in CIFAR_RELEASES[variant]['files']:
        images, _, classes = read_cifar(root, variant, split)
        counts[split] = len(images)
    counts['classes'] = len(classes)
    _check_counts('CIFAR-10' if variant == 'cifar10' else 'CIFAR-100', root, counts, expected,
                  CIFAR_HINT.format(root=root, **CIFAR_RELEASES[variant]))
    return counts


# ---------------------------------------------------------------------------------------------------------------------
# Oxford Flowers-102


FLOWERS_HINT = ('download 102flowers.tgz, imagelabels.mat and setid.mat from the Oxford VGG Flowers-102 page '
                '(https://www.robots.ox.ac.uk/~vgg/data/flowers/102/) into {root} and unpack 102flowers.tgz there (it '
                'makes jpg/); see data/README.md')
FLOWERS_SPLIT_KEYS = dict(train='trnid', val='valid', test='tstid')
# The release numbers its classes 1-102 only; these names, in label order, are the ones torchvision's Flowers102 and
# TensorFlow Datasets' oxford_flowers102 use.
FLOWERS102_CLASSES = (
    'pink primrose', 'hard-leaved pocket orchid', 'canterbury bells', 'sweet pea', 'english marigold', 'tiger lily',
    'moon orchid', 'bird of paradise', 'monkshood', 'globe thistle', 'snapdragon', "colt's foot", 'king protea',
    'spear thistle', 'yellow iris', 'globe-flower', 'purple coneflower', 'peruvian lily', 'balloon flower',
    'giant white arum lily', 'fire lily', 'pincushion flower', 'fritillary', 'red ginger', 'grape hyacinth',
    'corn poppy', 'prince of wales feathers', 'stemless gentian', 'artichoke', 'sweet william', 'carnation',
    'garden phlox', 'love in the mist', 'mexican aster', 'alpine sea holly', 'ruby-lipped cattleya', 'cape flower',
    'great masterwort', 'siam tulip', 'lenten rose', 'barbeton daisy', 'daffodil', 'sword lily', 'poinsettia',
    'bolero deep blue', 'wallflower', 'marigold', 'buttercup', 'oxeye daisy', 'common dandelion', 'petunia',
    'wild pansy', 'primula', 'sunflower', 'pelargonium', 'bishop of llandaff', 'gaura', 'geranium', 'orange dahlia',
    'pink-yellow dahlia?', 'cautleya spicata', 'japanese anemone', 'black-eyed susan', 'silverbush',
    'californian poppy', 'osteospermum', 'spring crocus', 'bearded iris', 'windflower', 'tree poppy', 'gazania',
    'azalea', 'water lily', 'rose', 'thorn apple', 'morning glory', 'passion flower', 'lotus', 'toad lily',
    'anthurium', 'frangipani', 'clematis', 'hibiscus', 'columbine', 'desert-rose', 'tree mallow', 'magnolia',
    'cyclamen', 'watercress', 'canna lily', 'hippeastrum', 'bee balm', 'ball moss', 'foxglove', 'bougainvillea',
    'camellia', 'mallow', 'mexican petunia', 'bromelia', 'blanket flower', 'trumpet creeper', 'blackberry lily')


def read_flowers102(root: str) -> Dict[str, List[Tuple[str, int]]]:
    """(image path, label from 0) per split ('train', 'val', 'test') of the Flowers-102 release in ``root``."""
    hint = FLOWERS_HINT.format(root=root)
    labels_path, setid_path = osp.join(root, 'imagelabels.mat'), osp.join(root, 'setid.mat')
    labels = _int_vector(_load_mat(labels_path, ['labels'], hint), 'labels', labels_path)
    bad = labels[(labels < 1) | (labels > len(FLOWERS102_CLASSES))]
    if bad.size:
        raise DataError(f"{labels_path}: label {bad[0]} is outside 1-{len(FLOWERS102_CLASSES)}; {hint}")
    setid = _load_mat(setid_path, list(FLOWERS_SPLIT_KEYS.values()), hint)
    splits = {}
    for split, key in FLOWERS_SPLIT_KEYS.items():
        ids = _int_vector(setid, key, setid_path)
        bad = ids[(ids < 1) | (ids > len(labels))]
        if bad.size:
            raise DataError(f'{setid_path}: {key!r} lists image {bad[0]}, but {labels_path} labels images '
                            f'1-{len(labels)}; {hint}')
        splits[split] = [(osp.join(root, 'jpg', f'image_{i:05d}.jpg'), int(labels[i - 1]) - 1) for i in ids]
    return splits


@DATASETS.register_module()
class Flowers102Dataset(_ReleaseDataset):
    """Oxford Flowers-102 from its release files in ``data_root``: ``jpg/image_00001.jpg`` ..., ``imagelabels.mat``
    (``labels``, 1-102) and ``setid.mat`` (``trnid``, ``valid``, ``tstid``: 1-based image numbers).

    Args:
        data_root: e.g. ``data/flowers102``.
        split: 'train' (1,020), 'val' (1,020), 'test' (6,149) or 'trainval' (train then val, 2,040).
        num_classes: when given, must be 102.
        **kwargs: further arguments of :class:`mmengine.dataset.BaseDataset`.
    """
    SPLITS = ('train', 'val', 'test', 'trainval')

    def __init__(self, data_root: str, split: str = 'train', num_classes: Optional[int] = None, **kwargs):
        super().__init__(data_root=data_root, split=split, num_classes=num_classes, **kwargs)

    def load_data_list(self) -> List[dict]:
        splits = read_flowers102(self.data_root)
        self._set_classes(FLOWERS102_CLASSES, 'Flowers-102')
        pairs = splits['train'] + splits['val'] if self.split == 'trainval' else splits[self.split]
        return [dict(img_path=path, gt_label=label) for path, label in pairs]


def check_flowers102_layout(root: str, expected: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Checks the Flowers-102 release in ``root``: both .mat files, every image a split lists, the images per split
    and the classes used against ``expected`` (default: the official counts). Returns the counts."""
    expected = OFFICIAL_COUNTS['flowers102'] if expected is None else expected
    hint = FLOWERS_HINT.format(root=root)
    splits = read_flowers102(root)
    _missing_images([path for pairs in splits.values() for path, _ in pairs], osp.join(root, 'setid.mat'), hint)
    counts = {split: len(pairs) for split, pairs in splits.items()}
    counts['classes'] = len({label for pairs in splits.values() for _, label in pairs})
    _check_counts('Flowers-102', root, counts, expected, hint)
    return counts


# ---------------------------------------------------------------------------------------------------------------------
# Stanford Cars: the devkit release


CARS_HINT = ('download cars_train.tgz, cars_test.tgz and car_devkit.tgz of the Stanford Cars dataset and unpack them '
             'in {root} (they make cars_train/, cars_test/ and devkit/), and put the test labels '
             'cars_test_annos_withlabels.mat in {root} or {root}/devkit; see data/README.md')
CARS_TEST_LABELS = 'cars_test_annos_withlabels.mat'


def _scalar(value):
    """The one value of a squeezed MATLAB field (a 0-d or 1-element array, or already a scalar)."""
    return np.asarray(value).reshape(-1)[0]


def _cars_test_labels(root: str) -> str:
    for path in (osp.join(root, CARS_TEST_LABELS), osp.join(root, 'devkit', CARS_TEST_LABELS)):
        if osp.isfile(path):
            return path
    unlabelled = osp.join(root, 'devkit', 'cars_test_annos.mat')
    note = (f' ({unlabelled} is there but has no labels: the devkit ships the test annotations without classes)'
            if osp.isfile(unlabelled) else '')
    places = f'{osp.join(root, CARS_TEST_LABELS)} or {osp.join(root, "devkit", CARS_TEST_LABELS)}'
    raise MissingFileError(f'expected {places}{note}: {CARS_HINT.format(root=root)}')


def read_stanford_cars(root: str, split: str) -> Tuple[List[Tuple[str, int]], List[str]]:
    """(image path, label from 0) of one split ('train' or 'test') of the Stanford Cars release in ``root``, and the
    class names of ``devkit/cars_meta.mat``."""
    hint = CARS_HINT.format(root=root)
    meta_path = osp.join(root, 'devkit', 'cars_meta.mat')
    classes = [str(name) for name in np.atleast_1d(_load_mat(meta_path, ['class_names'], hint)['class_names'])]
    if split == 'train':
        annos_path, img_dir = osp.join(root, 'devkit', 'cars_train_annos.mat'), osp.join(root, 'cars_train')
    else:
        annos_path, img_dir = _cars_test_labels(root), osp.join(root, 'cars_test')
    annotations = np.atleast_1d(_load_mat(annos_path, ['annotations'], hint)['annotations'])
    fields = annotations.dtype.names or ()
    for field in ('class', 'fname'):
        if field not in fields:
            raise DataError(f"{annos_path}: the annotations have no field {field!r} (they have {list(fields)}): not "
                            f'the official file; {hint}')
    pairs = []
    for record in annotations:
        label, fname = int(_scalar(record['class'])), str(_scalar(record['fname']))
        if not 1 <= label <= len(classes):
            raise DataError(f'{annos_path}: class {label} of {fname} is outside 1-{len(classes)} of {meta_path}; '
                            f'{hint}')
        pairs.append((osp.join(img_dir, fname), label - 1))
    return pairs, classes


@DATASETS.register_module()
class StanfordCarsDataset(_ReleaseDataset):
    """Stanford Cars from the devkit release in ``data_root``: ``devkit/cars_meta.mat`` (``class_names``),
    ``devkit/cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat`` (``annotations``: bbox_x1..bbox_y2,
    ``class`` 1-196, ``fname``), ``cars_train/*.jpg``, ``cars_test/*.jpg``. Whole images (the boxes are not used).

    Args:
        data_root: e.g. ``data/stanford_cars``.
        split: 'train' (8,144) or 'test' (8,041).
        num_classes: when given, must equal the number of names in ``cars_meta.mat`` (196).
        **kwargs: further arguments of :class:`mmengine.dataset.BaseDataset`.
    """
    SPLITS = ('train', 'test')

    def __init__(self, data_root: str, split: str = 'train', num_classes: Optional[int] = None, **kwargs):
        super().__init__(data_root=data_root, split=split, num_classes=num_classes, **kwargs)

    def load_data_list(self) -> List[dict]:
        pairs, classes = read_stanford_cars(self.data_root, self.split)
        self._set_classes(classes, osp.join(self.data_root, 'devkit', 'cars_meta.mat'))
        return [dict(img_path=path, gt_label=label) for path, label in pairs]


def check_stanford_cars_layout(root: str, expected: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Checks the Stanford Cars release in ``root``: the .mat files, every image they list, the images per split and
    the classes against ``expected`` (default: the official counts). Returns the counts."""
    expected = OFFICIAL_COUNTS['stanford_cars'] if expected is None else expected
    hint = CARS_HINT.format(root=root)
    counts, classes = {}, []
    for split in StanfordCarsDataset.SPLITS:
        pairs, classes = read_stanford_cars(root, split)
        where = osp.join(root, 'devkit', 'cars_train_annos.mat') if split == 'train' else _cars_test_labels(root)
        _missing_images([path for path, _ in pairs], where, hint)
        counts[split] = len(pairs)
    counts['classes'] = len(classes)
    _check_counts('Stanford Cars', root, counts, expected, hint)
    return counts


# ---------------------------------------------------------------------------------------------------------------------
# iNaturalist 2018 / 2019


INAT_HINT = ('download train_val{year}.tar.gz, train{year}.json.tar.gz and val{year}.json.tar.gz of the iNaturalist '
             '{year} competition (https://github.com/visipedia/inat_comp/tree/master/{year}) and unpack them in {root} '
             '(they make train_val{year}/, train{year}.json and val{year}.json); see data/README.md')
# The levels DeiT's INatDataset names (--inat-category); 2019's categories have no 'supercategory'.
INAT_LEVELS = ('kingdom', 'phylum', 'class', 'order', 'supercategory', 'family', 'genus', 'name')


def _load_json(path: str, hint: str):
    if not osp.isfile(path):
        raise MissingFileError(f'expected {path}: {hint}')
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f'{path} is not readable JSON ({err}): a truncated download or another file; {hint}') from None


def _inat_samples(data: dict, path: str, hint: str) -> List[Tuple[str, int]]:
    """(file_name, category_id) of every image of one json file, through its annotations."""
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data, dict) or key not in data:
            raise DataError(f'{path} has no {key!r} list: not an iNaturalist annotation file; {hint}')
    try:
        category_of = {ann['image_id']: ann['category_id'] for ann in data['annotations']}
        samples = [(image['file_name'], category_of.get(image['id'])) for image in data['images']]
    except (KeyError, TypeError) as err:
        raise DataError(f'{path}: an image or annotation lacks {err} (images need id and file_name, annotations '
                        f'image_id and category_id); {hint}') from None
    unlabelled = [name for name, category in samples if category is None]
    if unlabelled:
        raise DataError(f'{path}: {len(unlabelled)} images have no annotation, e.g. {unlabelled[0]}; {hint}')
    return samples


def _inat_categories(root: str, train: dict, train_path: str, hint: str) -> Tuple[Dict[int, dict], str]:
    """Category id -> category, from categories.json where it lies in ``root`` (as DeiT reads it), else from the
    training file."""
    path = osp.join(root, 'categories.json')
    categories = _load_json(path, hint) if osp.isfile(path) else train['categories']
    source = path if osp.isfile(path) else train_path
    try:
        return {int(category['id']): category for category in categories}, source
    except (KeyError, TypeError, ValueError):
        raise DataError(f'{source}: every category needs an integer "id"; {hint}') from None


def read_inat(root: str, year: int, splits: Sequence[str] = ('train', 'val'), category: str = 'name'
              ) -> Tuple[Dict[str, List[Tuple[str, int]]], List[str]]:
    """(image path, label) per split ('train', 'val') of iNaturalist ``year`` in ``root``, and the class names.
    Classes are the values of ``category`` in the order of their first appearance in the training annotations
    (DeiT's INatDataset), so both splits share them; the training file is read for either split."""
    if year not in (2018, 2019):
        raise ConfigError(f'iNaturalist year must be 2018 or 2019, got {year!r}')
    if category not in INAT_LEVELS:
        raise ConfigError(f'iNaturalist category must be one of {INAT_LEVELS}, got {category!r}')
    hint = INAT_HINT.format(root=root, year=year)
    train_path = osp.join(root, f'train{year}.json')
    train = _load_json(train_path, hint)
    train_samples = _inat_samples(train, train_path, hint)
    categories, source = _inat_categories(root, train, train_path, hint)

    def level(category_id, where: str) -> str:
        entry = categories.get(category_id)
        if entry is None:
            raise DataError(f'{where}: category_id {category_id} is not among the categories of {source}; {hint}')
        if category not in entry:
            raise DataError(f'{source}: the categories have no {category!r} (they have {sorted(entry)}); choose '
                            'another category level')
        return str(entry[category])

    label_of: Dict[str, int] = {}
    for ann in train['annotations']:  # DeiT's targeter: first appearance in the training annotations
        label_of.setdefault(level(ann['category_id'], train_path), len(label_of))
    result = {}
    for split in splits:
        if split == 'train':
            samples, path = train_samples, train_path
        else:
            path = osp.join(root, f'{split}{year}.json')
            samples = _inat_samples(_load_json(path, hint), path, hint)
        pairs = []
        for file_name, category_id in samples:
            value = level(category_id, path)
            if value not in label_of:
                raise DataError(f'{path}: {file_name} is of {category} {value!r}, which no training image of '
                                f'{train_path} has')
            pairs.append((osp.join(root, file_name), label_of[value]))
        result[split] = pairs
    return result, list(label_of)


@DATASETS.register_module()
class INaturalistDataset(_ReleaseDataset):
    """iNaturalist 2018 or 2019 from the competition files in ``data_root``: ``train{year}.json``, ``val{year}.json``
    (COCO-like: images, annotations, categories) and the images ``train_val{year}/<super category>/<id>/*.jpg``
    (``file_name`` in the json, relative to ``data_root``).

    Args:
        data_root: e.g. ``data/inat2018``.
        year: 2018 or 2019.
        split: 'train' or 'val'.
        category: the taxonomic level that makes the classes, as DeiT's ``--inat-category``: 'name' (the species,
            default: 8,142 classes in 2018, 1,010 in 2019), 'genus', 'family', 'order', 'class', 'phylum',
            'kingdom', or 'supercategory' (2018 only). Labels are numbered in the order the values first appear in
            the training annotations, for both splits, as DeiT's ``INatDataset`` numbers them.
        num_classes: when given, must equal the number of classes at that level.
        **kwargs: further arguments of :class:`mmengine.dataset.BaseDataset`.
    """
    SPLITS = ('train', 'val')

    def __init__(self, data_root: str, year: int = 2018, split: str = 'train', category: str = 'name',
                 num_classes: Optional[int] = None, **kwargs):
        self.year = year
        self.category = category
        super().__init__(data_root=data_root, split=split, num_classes=num_classes, **kwargs)

    def load_data_list(self) -> List[dict]:
        splits, classes = read_inat(self.data_root, self.year, [self.split], self.category)
        self._set_classes(classes, f'the {self.category!r} level of iNaturalist {self.year}')
        return [dict(img_path=path, gt_label=label) for path, label in splits[self.split]]


def check_inat_layout(root: str, year: int = 2018, expected: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Checks iNaturalist ``year`` in ``root``: both json files, every image they list, the images per split and the
    species against ``expected`` (default: the official counts). Returns the counts."""
    expected = OFFICIAL_COUNTS[f'inat{year}'] if expected is None else expected
    hint = INAT_HINT.format(root=root, year=year)
    splits, classes = read_inat(root, year)
    for split, pairs in splits.items():
        _missing_images([path for path, _ in pairs], osp.join(root, f'{split}{year}.json'), hint)
    counts = {split: len(pairs) for split, pairs in splits.items()}
    counts['classes'] = len(classes)
    _check_counts(f'iNaturalist {year}', root, counts, expected, hint)
    return counts


# ---------------------------------------------------------------------------------------------------------------------
# tools/prepare_data.py


TRANSFER_CHECKS = {
    'cifar10': ('CIFAR-10 (python pickles)', lambda root, expected: check_cifar_layout(root, 'cifar10', expected)),
    'cifar100': ('CIFAR-100 (python pickles)', lambda root, expected: check_cifar_layout(root, 'cifar100', expected)),
    'flowers102': ('Oxford Flowers-102', check_flowers102_layout),
    'stanford_cars': ('Stanford Cars (devkit release)', check_stanford_cars_layout),
    'inat2018': ('iNaturalist 2018', lambda root, expected: check_inat_layout(root, 2018, expected)),
    'inat2019': ('iNaturalist 2019', lambda root, expected: check_inat_layout(root, 2019, expected)),
}


def check_transfer_layout(name: str, root: str, expected: Optional[Dict[str, int]] = None) -> str:
    """Runs the layout check of ``name`` (a key of ``TRANSFER_CHECKS``) on ``root`` against ``expected`` (default:
    ``OFFICIAL_COUNTS[name]``, looked up now) and returns the line ``tools/prepare_data.py`` prints."""
    title, check = TRANSFER_CHECKS[name]
    counts = check(root, OFFICIAL_COUNTS[name] if expected is None else expected)
    return f'{root}: {_count_line(counts)}, as {title} should have'
