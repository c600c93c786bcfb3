"""ImageNet-21k in its release layouts: one folder of images per synset, with or without a validation split.

The releases:

* **winter21** (``winter21_whole.tar.gz``, the one image-net.org serves today, 19,167 synsets) and **fall11**
  (``fall11_whole.tar``, 21,841 synsets, withdrawn): the archive holds one ``<wnid>.tar`` per synset; unpacked
  (``python tools/prepare_data.py imagenet21k --unpack``) it is ``<root>/<wnid>/<wnid>_<n>.JPEG``. There is no
  validation split: :class:`ImageNet21kDataset` holds out ``val_per_class`` images of every synset, the same ones on
  every machine (chosen by a hash of the file name, not by listing order), ``split='train'`` reads the rest.
* **ImageNet-21k-P** (Ridnik et al., the processed release): ``<root>/imagenet21k_train/<wnid>/`` and
  ``<root>/imagenet21k_val/<wnid>/``: set ``data_prefix`` to the split's folder and ``val_per_class=0``.
"""
import os
import os.path as osp
import zlib
from typing import List, Optional

from ..errors import DataError
from ..registry import DATASETS
from .folder import ImageFolderDataset

# Synsets of the releases, for the messages.
RELEASE_CLASSES = {'winter21': 19167, 'fall11': 21841, 'imagenet21k-p': 10450}


def held_out(file_name: str, salt: str = 'cosub_seg') -> int:
    """The rank key that picks the held-out images of a synset: a CRC-32 of the file name, so the choice does not
    depend on the file system's listing order or on which other files a copy holds."""
    return zlib.crc32(f'{salt}/{file_name}'.encode())


def class_tars(img_dir: str) -> List[str]:
    """The ``<wnid>.tar`` files of a release that was not unpacked."""
    return sorted(f for f in os.listdir(img_dir) if f.endswith('.tar')) if osp.isdir(img_dir) else []


@DATASETS.register_module()
class ImageNet21kDataset(ImageFolderDataset):
    """ImageNet-21k read from its synset folders (see the module's docstring for the layouts).

    Args:
        split: 'train' (every image but the held-out ones) or 'val' (the held-out ones); with
            ``val_per_class=0`` every image of ``data_prefix`` is read, whatever the split.
        val_per_class: images of each synset held out for validation (synsets with fewer than twice as many images
            keep at least as many for training as they give).
        num_classes: the synset count the model is built for; a folder with another count is refused (19,167 in
            winter21, 21,841 in fall11, 10,450 in ImageNet-21k-P).
        **kwargs: as :class:`ImageFolderDataset` (``data_root``, ``data_prefix``, ``classes``, ``pipeline``...).
    """

    def __init__(self, split: str = 'train', val_per_class: int = 10, num_classes: Optional[int] = None, **kwargs):
        if split not in ('train', 'val'):
            raise DataError(f"ImageNet21kDataset: split must be 'train' or 'val', got {split!r}")
        if val_per_class < 0:
            raise DataError(f'ImageNet21kDataset: val_per_class must be >= 0, got {val_per_class}')
        self.split = split
        self.val_per_class = val_per_class
        self.num_classes = num_classes
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix['img_path']
        tars = class_tars(img_dir)
        if tars and not any(entry.is_dir() for entry in os.scandir(img_dir)):
            raise DataError(f'{img_dir} holds {len(tars)} synset archives ({tars[0]}, ...), not synset folders: '
                            f'unpack them first with `python tools/prepare_data.py imagenet21k --root {img_dir} '
                            '--unpack` (see data/README.md)')
        data_list = super().load_data_list()
        classes = self._metainfo['classes']
        if self.num_classes is not None and len(classes) != self.num_classes:
            known = ', '.join(f'{n:,} in {name}' for name, n in RELEASE_CLASSES.items())
            raise DataError(f'{img_dir} holds {len(classes):,} synset folders, the model is built for '
                            f'{self.num_classes:,} classes ({known}): set model.num_classes and '
                            'model.data_preprocessor.num_classes to the folder count, or complete the download')
        if not self.val_per_class:
            return data_list
        by_class = {}
        for item in data_list:
            by_class.setdefault(item['gt_label'], []).append(item)
        kept = []
        for label in sorted(by_class):
            items = sorted(by_class[label], key=lambda it: (held_out(osp.basename(it['img_path'])), it['img_path']))
            n_val = min(self.val_per_class, len(items) // 2)
            kept.extend(items[:n_val] if self.split == 'val' else items[n_val:])
        if not kept:
            raise DataError(f'the {self.split} split of {img_dir} is empty: every synset has fewer than 2 images')
        return sorted(kept, key=lambda it: (it['gt_label'], it['img_path']))


def unpack_class_tars(root: str, progress: bool = False) -> int:
    """Unpacks every ``<wnid>.tar`` of ``root`` into ``root/<wnid>/`` (tarfile's 'data' filter: no paths outside the
    folder, no links out, no device files), then deletes the archive; a synset whose folder exists already is
    skipped, so an interrupted run continues. Returns the number of archives unpacked."""
    import tarfile

    from ..progress import track
    tars = class_tars(root)
    done = 0
    for name in (track(tars) if progress else tars):
        wnid = name[:-len('.tar')]
        out = osp.join(root, wnid)
        if osp.isdir(out):
            continue
        partial = out + '.partial'
        try:
            with tarfile.open(osp.join(root, name)) as archive:
                archive.extractall(partial, filter='data')
        except (tarfile.TarError, OSError) as err:
            raise DataError(f'{osp.join(root, name)} cannot be unpacked ({err}): download it again') from None
        os.replace(partial, out)
        os.remove(osp.join(root, name))
        done += 1
    return done


def count_synsets(root: str) -> dict:
    """Synset folders and images under ``root`` (one level of folders), for ``tools/prepare_data.py imagenet21k``."""
    from .folder import IMG_EXTENSIONS
    if not osp.isdir(root):
        raise DataError(f'{root} does not exist: download ImageNet-21k (winter21_whole.tar.gz from image-net.org) and '
                        'unpack it there (see data/README.md)')
    folders = sorted(entry.path for entry in os.scandir(root) if entry.is_dir())
    images = sum(1 for folder in folders for f in os.listdir(folder) if f.lower().endswith(IMG_EXTENSIONS))
    return dict(synsets=len(folders), images=images, archives=len(class_tars(root)))


__all__ = ['ImageNet21kDataset', 'RELEASE_CLASSES', 'class_tars', 'held_out', 'unpack_class_tars', 'count_synsets']
