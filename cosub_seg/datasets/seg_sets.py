"""Layout checks of Cityscapes, Pascal Context 59 and COCO-Stuff-164k in the layouts mmseg's ``CityscapesDataset``,
``PascalContextDataset59`` and ``COCOStuffDataset`` read, and the label conversions of the official Cityscapes and
COCO-Stuff releases into the ``*_labelTrainIds.png`` files those classes expect.

The official releases do not ship the train-id files: Cityscapes' gtFine has ``*_gtFine_labelIds.png`` (the 34 ids
of cityscapesScripts' ``labels.py``), COCO-Stuff's ``stuffthingmaps_trainval2017`` the 182 ids 0-181. The
conversions write ``*_labelTrainIds.png`` next to each original (atomically, skipping files already written, so a
rerun or a resumed run does nothing twice). Pascal Context's labels come from the Detail API's json, which mmseg's
``tools/dataset_converters/pascal_context.py`` turns into ``SegmentationClassContext/*.png``; the check says so.
"""
import os
import os.path as osp
from multiprocessing import Pool
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from ..errors import DataError, MissingFileError
from ..progress import ThrottledProgressBar

IGNORE_INDEX = 255

# Official image counts. Cityscapes gtFine: 2,975 train / 500 val (Cordts et al., CVPR 2016; cityscapes-dataset.com).
CITYSCAPES_COUNTS = dict(train=2975, val=500)
# Pascal Context as mmseg's converter writes it from trainval_merged.json: 4,996 train / 5,104 val (the counts users
# of that converter report, open-mmlab/mmsegmentation#394, and the Detail API's maintainer in
# zhanghang1989/PyTorch-Encoding#155: the split was changed slightly after the 4,998 / 5,105 of the papers).
PASCAL_CONTEXT_COUNTS = dict(train=4996, val=5104)
# COCO 2017: 118,287 train / 5,000 val images (mmseg's tools/dataset_converters/coco_stuff164k.py checks the sum,
# COCO_LEN = 123287).
COCO_STUFF164K_COUNTS = dict(train2017=118287, val2017=5000)

# Cityscapes labelIds -> trainIds: the 19 evaluated classes of cityscapesScripts' helpers/labels.py (id: trainId,
# road .. bicycle). Every other id (the void classes 0-6, parking 9, rail track 10, guard rail 14, bridge 15,
# tunnel 16, polegroup 18, caravan 29, trailer 30, anything else) has trainId 255, ignored.
CITYSCAPES_ID_TO_TRAINID = {
    7: 0,     # road
    8: 1,     # sidewalk
    11: 2,    # building
    12: 3,    # wall
    13: 4,    # fence
    17: 5,    # pole
    19: 6,    # traffic light
    20: 7,    # traffic sign
    21: 8,    # vegetation
    22: 9,    # terrain
    23: 10,   # sky
    24: 11,   # person
    25: 12,   # rider
    26: 13,   # car
    27: 14,   # truck
    28: 15,   # bus
    31: 16,   # train
    32: 17,   # motorcycle
    33: 18,   # bicycle
}

# COCO-Stuff-164k: stuffthingmaps hold the 182 ids 0-181 (COCO's things 1-91 and stuff 92-182, minus 1) and 255 for
# unlabeled. Eleven thing ids of COCO's 91 were never annotated (COCO ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91);
# the 171 others keep their order as trainIds 0-170. This is the mapping of mmseg's
# tools/dataset_converters/coco_stuff164k.py (clsID_to_trID); an id outside it becomes 255 here (mmseg's converter
# would leave it unchanged; the release holds none).
COCO_STUFF_UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
COCO_STUFF_ID_TO_TRAINID = {i: t for t, i in enumerate(i for i in range(182) if i not in COCO_STUFF_UNUSED_IDS)}


def _lut(table: Dict[int, int]) -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in table.items():
        lut[label_id] = train_id
    return lut


CITYSCAPES_LUT = _lut(CITYSCAPES_ID_TO_TRAINID)
COCO_STUFF_LUT = _lut(COCO_STUFF_ID_TO_TRAINID)
_LUTS = dict(cityscapes=CITYSCAPES_LUT, coco_stuff164k=COCO_STUFF_LUT)


def _files(folder: str, suffix: str, recursive: bool = False) -> Dict[str, str]:
    """``{key: path}`` of the files in ``folder`` (and its sub-folders when ``recursive``) whose names end with
    ``suffix``; the key is the relative path without the suffix."""
    found = {}
    if recursive:
        for dirpath, _, names in os.walk(folder):
            for name in names:
                if name.endswith(suffix) and not name.startswith('.'):
                    path = osp.join(dirpath, name)
                    found[osp.relpath(path, folder)[:-len(suffix)]] = path
    else:
        for name in os.listdir(folder):
            if name.endswith(suffix) and not name.startswith('.'):
                found[name[:-len(suffix)]] = osp.join(folder, name)
    return found


def _require_dir(folder: str, hint: str) -> None:
    if not osp.isdir(folder):
        raise MissingFileError(f'{folder} is missing: {hint}')


def _spot_check_labels(path: str, max_label: int, what: str) -> None:
    """The first label map of a split holds single-channel 8-bit labels in [0, max_label] or 255."""
    labels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise DataError(f'{path} cannot be read as an image: the file is damaged or not a PNG')
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise DataError(f'{path} is not a single-channel 8-bit label map (shape {labels.shape}, {labels.dtype}): '
                        f'{what}')
    bad = np.unique(labels[(labels > max_label) & (labels != IGNORE_INDEX)])
    if bad.size:
        raise DataError(f'{path} holds label values {bad[:10].tolist()} above {max_label} that are not the ignore '
                        f'index {IGNORE_INDEX}: {what}')


def _check_pairs(images: Dict[str, str], labels: Dict[str, str], originals: Dict[str, str], img_dir: str,
                 ann_dir: str, img_suffix: str, label_suffix: str, expected: Optional[int], name: str,
                 convert_hint: str) -> int:
    """Every image has its train-id label and every label its image, in the expected number."""
    missing = sorted(set(images) - set(labels))
    if missing:
        convertible = [key for key in missing if key in originals]
        example = osp.join(img_dir, missing[0] + img_suffix)
        if convertible:
            raise DataError(f'{len(missing)} images in {img_dir} have no {label_suffix} in {ann_dir} (e.g. '
                            f'{osp.join(ann_dir, convertible[0] + label_suffix)} for {example}), but '
                            f'{len(convertible)} have the release\'s original labels: {convert_hint}')
        raise DataError(f'{len(missing)} images in {img_dir} have no label in {ann_dir}, e.g. {example} has no '
                        f'{osp.join(ann_dir, missing[0] + label_suffix)}')
    extra = sorted(set(labels) - set(images))
    if extra:
        raise DataError(f'{len(extra)} labels in {ann_dir} have no image in {img_dir}, e.g. '
                        f'{osp.join(ann_dir, extra[0] + label_suffix)} has no {extra[0] + img_suffix}')
    if expected is not None and len(images) != expected:
        raise DataError(f'{img_dir} holds {len(images)} images with labels, {name} has {expected}: the download is '
                        'incomplete or mixed with other files')
    return len(images)


# --------------------------------------------------------------------------------------------------- Cityscapes

CITYSCAPES_HINT = ('log in at https://www.cityscapes-dataset.com/downloads/, download leftImg8bit_trainvaltest.zip '
                   'and gtFine_trainvaltest.zip and unzip both into {root} (see data/README.md)')


def check_cityscapes_layout(root: str, expected: Dict[str, int] = CITYSCAPES_COUNTS) -> Dict[str, int]:
    """Verifies ``root/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and, for each,
    ``root/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (what ``CityscapesDataset`` reads), the official
    counts, and the values of one label map per split (0-18 or 255). A release without the train-id files is told to
    run ``--convert``. Raises ``FileNotFoundError`` or ``ValueError`` naming the folder or file; returns the number
    of image/label pairs per split."""
    hint = CITYSCAPES_HINT.format(root=root)
    _require_dir(root, hint)
    convert_hint = f'run `python tools/prepare_data.py cityscapes --root {root} --convert` to write them'
    counts = {}
    for split, count in expected.items():
        img_dir, ann_dir = osp.join(root, 'leftImg8bit', split), osp.join(root, 'gtFine', split)
        _require_dir(img_dir, hint)
        _require_dir(ann_dir, hint)
        images = _files(img_dir, '_leftImg8bit.png', recursive=True)
        labels = _files(ann_dir, '_gtFine_labelTrainIds.png', recursive=True)
        originals = _files(ann_dir, '_gtFine_labelIds.png', recursive=True)
        counts[split] = _check_pairs(images, labels, originals, img_dir, ann_dir, '_leftImg8bit.png',
                                     '_gtFine_labelTrainIds.png', count, 'Cityscapes', convert_hint)
        if labels:
            _spot_check_labels(labels[min(labels)], 18, f'not Cityscapes train ids; {convert_hint}')
    return counts


# ----------------------------------------------------------------------------------------------- Pascal Context

PASCAL_CONTEXT_CONVERT = (
    'the labels come from the Detail API: pip install the Detail API (https://github.com/zhanghang1989/detail-api, '
    'PythonAPI), download trainval_merged.json (see mmseg\'s docs/en/user_guides/2_dataset_prepare.md) and run, in '
    'an mmsegmentation checkout, `python tools/dataset_converters/pascal_context.py VOCdevkit '
    'VOCdevkit/VOC2010/trainval_merged.json` (VOCdevkit: the folder above {root}); it writes '
    'SegmentationClassContext/*.png and ImageSets/SegmentationContext/{{train,val}}.txt')


def check_pascal_context_layout(root: str, expected: Dict[str, int] = PASCAL_CONTEXT_COUNTS) -> Dict[str, int]:
    """Verifies the VOC2010 folder ``root`` as mmseg's ``PascalContextDataset59`` reads it:
    ``ImageSets/SegmentationContext/<split>.txt`` lists names, each with ``JPEGImages/<name>.jpg`` and
    ``SegmentationClassContext/<name>.png``; the splits do not overlap; the counts of mmseg's converter; one label
    map per split holds 0-59 (0 background, reduced to the ignore index by ``reduce_zero_label``). Raises
    ``FileNotFoundError`` or ``ValueError`` naming the folder or file and, where the converted labels are missing,
    what to run; returns the number of names per split."""
    download = ('download VOCtrainval_03-May-2010.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2010/ and '
                f'untar it so that {root} is VOCdevkit/VOC2010 (see data/README.md)')
    convert = PASCAL_CONTEXT_CONVERT.format(root=root)
    _require_dir(root, download)
    img_dir = osp.join(root, 'JPEGImages')
    _require_dir(img_dir, download)
    ann_dir = osp.join(root, 'SegmentationClassContext')
    _require_dir(ann_dir, convert)
    counts, seen = {}, {}
    for split, count in expected.items():
        list_file = osp.join(root, 'ImageSets', 'SegmentationContext', f'{split}.txt')
        if not osp.isfile(list_file):
            raise MissingFileError(f'{list_file} is missing: {convert}')
        with open(list_file) as f:
            names = [line.strip() for line in f if line.strip()]
        if len(set(names)) != len(names):
            raise DataError(f'{list_file} lists {len(names) - len(set(names))} names twice: re-run the converter')
        for other, other_names in seen.items():
            both = sorted(set(names) & other_names)
            if both:
                raise DataError(f'{len(both)} names are in both the {other} and the {split} split, e.g. {both[0]}: '
                                'the split files are mixed up; re-run the converter')
        seen[split] = set(names)
        for name in names:
            image, label = osp.join(img_dir, name + '.jpg'), osp.join(ann_dir, name + '.png')
            if not osp.isfile(image):
                raise DataError(f'{list_file} lists {name} but {image} is missing: the VOC2010 images are '
                                f'incomplete; {download}')
            if not osp.isfile(label):
                raise DataError(f'{list_file} lists {name} but its label {label} is missing: {convert}')
        if count is not None and len(names) != count:
            raise DataError(f'{list_file} lists {len(names)} images, mmseg\'s Pascal Context {split} split has '
                            f'{count}: {convert}')
        if names:
            _spot_check_labels(osp.join(ann_dir, min(names) + '.png'), 59,
                               f'not Pascal Context 59 labels (0 background, 1-59); {convert}')
        counts[split] = len(names)
    return counts


# ------------------------------------------------------------------------------------------------ COCO-Stuff-164k

COCO_STUFF_HINT = ('download train2017.zip and val2017.zip from http://images.cocodataset.org/zips/ and '
                   'stuffthingmaps_trainval2017.zip from https://github.com/nightrome/cocostuff, then unzip the '
                   'images into {root}/images and the stuff maps into {root}/annotations (see data/README.md)')


def check_coco_stuff164k_layout(root: str, expected: Dict[str, int] = COCO_STUFF164K_COUNTS) -> Dict[str, int]:
    """Verifies ``root/images/<split>/*.jpg`` and, for each, ``root/annotations/<split>/*_labelTrainIds.png`` (what
    ``COCOStuffDataset`` reads), the official counts, and the values of one label map per split (0-170 or 255). A
    release without the train-id files is told to run ``--convert``. Raises ``FileNotFoundError`` or
    ``ValueError`` naming the folder or file; returns the number of image/label pairs per split."""
    hint = COCO_STUFF_HINT.format(root=root)
    _require_dir(root, hint)
    convert_hint = f'run `python tools/prepare_data.py coco_stuff164k --root {root} --convert` to write them'
    counts = {}
    for split, count in expected.items():
        img_dir, ann_dir = osp.join(root, 'images', split), osp.join(root, 'annotations', split)
        _require_dir(img_dir, hint)
        _require_dir(ann_dir, hint)
        images = _files(img_dir, '.jpg')
        labels = _files(ann_dir, '_labelTrainIds.png')
        originals = _coco_stuff_originals(ann_dir)
        counts[split] = _check_pairs(images, labels, originals, img_dir, ann_dir, '.jpg', '_labelTrainIds.png',
                                     count, 'COCO-Stuff-164k', convert_hint)
        if labels:
            _spot_check_labels(labels[min(labels)], 170, f'not COCO-Stuff train ids; {convert_hint}')
    return counts


def _coco_stuff_originals(ann_dir: str) -> Dict[str, str]:
    return {key: path for key, path in _files(ann_dir, '.png').items() if not key.endswith('_labelTrainIds')}


# ---------------------------------------------------------------------------------------------------- conversion

def _convert_one(job: Tuple[str, str, str]) -> bool:
    """Writes ``dst`` from ``src`` through the named table; False when ``dst`` already exists."""
    src, dst, table = job
    if osp.exists(dst):
        return False
    labels = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise DataError(f'{src} cannot be read as an image: the file is damaged; download it again')
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise DataError(f'{src} is not a single-channel 8-bit label map (shape {labels.shape}, {labels.dtype}): '
                        'not a file of the official release')
    ok, encoded = cv2.imencode('.png', _LUTS[table][labels])
    if not ok:
        raise DataError(f'could not encode the train ids of {src} as PNG')
    part = f'{dst}.{os.getpid()}.part'
    with open(part, 'wb') as f:
        f.write(encoded.tobytes())
    os.replace(part, dst)  # atomic: an interrupted run leaves no half-written label map under the final name
    return True


def _convert(jobs: List[Tuple[str, str, str]], workers: int, progress: bool) -> Dict[str, int]:
    bar = ThrottledProgressBar(len(jobs)) if progress and jobs else None
    written = 0
    if workers > 1 and len(jobs) > 1:
        with Pool(workers) as pool:
            for done in pool.imap_unordered(_convert_one, jobs, chunksize=64):
                written += done
                if bar:
                    bar.update()
    else:
        for job in jobs:
            written += _convert_one(job)
            if bar:
                bar.update()
    if bar:
        bar.file.write('\n')
    return dict(written=written, skipped=len(jobs) - written)


def _convert_splits(splits: Iterable[str], require: Callable[[str], None],
                    find: Callable[[str], Dict[str, str]], suffix: str, table: str, workers: int,
                    progress: bool) -> Dict[str, Dict[str, int]]:
    result = {}
    for split in splits:
        folder = require(split)
        jobs = [(path, osp.join(folder, key + suffix), table) for key, path in sorted(find(folder).items())]
        if not jobs:
            raise DataError(f'{folder} holds no original label maps to convert: the annotations are missing from '
                            'the download')
        result[split] = _convert(jobs, workers, progress)
    return result


def convert_cityscapes(root: str, splits: Iterable[str] = tuple(CITYSCAPES_COUNTS), workers: int = 1,
                       progress: bool = False) -> Dict[str, Dict[str, int]]:
    """Writes ``<name>_gtFine_labelTrainIds.png`` next to every ``<name>_gtFine_labelIds.png`` of
    ``root/gtFine/<split>/<city>/`` through :data:`CITYSCAPES_ID_TO_TRAINID` (what cityscapesScripts'
    ``createTrainIdLabelImgs`` writes, and mmseg's ``tools/dataset_converters/cityscapes.py``). Files already
    written are skipped. Returns ``{split: {'written': n, 'skipped': m}}``."""
    hint = CITYSCAPES_HINT.format(root=root)
    _require_dir(root, hint)

    def require(split: str) -> str:
        folder = osp.join(root, 'gtFine', split)
        _require_dir(folder, hint)
        return folder

    return _convert_splits(splits, require, lambda d: _files(d, '_gtFine_labelIds.png', recursive=True),
                           '_gtFine_labelTrainIds.png', 'cityscapes', workers, progress)


def convert_coco_stuff164k(root: str, splits: Iterable[str] = tuple(COCO_STUFF164K_COUNTS), workers: int = 1,
                           progress: bool = False) -> Dict[str, Dict[str, int]]:
    """Writes ``<id>_labelTrainIds.png`` next to every ``<id>.png`` of ``root/annotations/<split>/`` (the
    stuffthingmaps) through :data:`COCO_STUFF_ID_TO_TRAINID`, the mapping of mmseg's
    ``tools/dataset_converters/coco_stuff164k.py``. Files already written are skipped. Returns
    ``{split: {'written': n, 'skipped': m}}``."""
    hint = COCO_STUFF_HINT.format(root=root)
    _require_dir(root, hint)

    def require(split: str) -> str:
        folder = osp.join(root, 'annotations', split)
        _require_dir(folder, hint)
        return folder

    return _convert_splits(splits, require, _coco_stuff_originals, '_labelTrainIds.png', 'coco_stuff164k',
                           workers, progress)


# What tools/prepare_data.py offers for each set: the check, the conversion (None: not ours to do), the default root.
SEG_SETS = dict(
    cityscapes=dict(check=check_cityscapes_layout, convert=convert_cityscapes, root='data/cityscapes',
                    help='check a Cityscapes folder (leftImg8bit + gtFine); --convert writes the train-id labels'),
    pascal_context=dict(check=check_pascal_context_layout, convert=None, root='data/VOCdevkit/VOC2010',
                        help="check a Pascal Context VOC2010 folder converted by mmseg's pascal_context.py"),
    coco_stuff164k=dict(check=check_coco_stuff164k_layout, convert=convert_coco_stuff164k,
                        root='data/coco_stuff164k',
                        help='check a COCO-Stuff-164k folder; --convert writes the train-id labels'),
)



def prepare_seg_set(name: str, root: str, convert: bool = False, workers: int = 1, progress: bool = True) -> str:
    """What ``tools/prepare_data.py <name>`` does: the conversion when asked, then the layout check; returns the
    lines to print."""
    entry = SEG_SETS[name]
    lines = []
    if convert:
        for split, done in entry['convert'](root, workers=workers, progress=progress).items():
            lines.append(f'{split}: wrote {done["written"]} train-id label maps, {done["skipped"]} already there')
    counts = entry['check'](root)
    pairs = ', '.join(f'{count:,} {split}' for split, count in counts.items())
    lines.append(f'{root}: {pairs} image/label pairs, as {name} should have')
    return '\n'.join(lines)


__all__ = [
    'CITYSCAPES_COUNTS', 'PASCAL_CONTEXT_COUNTS', 'COCO_STUFF164K_COUNTS', 'CITYSCAPES_ID_TO_TRAINID',
    'COCO_STUFF_ID_TO_TRAINID', 'COCO_STUFF_UNUSED_IDS', 'SEG_SETS', 'check_cityscapes_layout',
    'check_pascal_context_layout', 'check_coco_stuff164k_layout', 'convert_cityscapes', 'convert_coco_stuff164k',
    'prepare_seg_set',
]
