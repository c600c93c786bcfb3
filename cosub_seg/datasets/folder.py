"""ImageNet-style classification datasets: one sub-folder per class, or an annotation file."""
import os
import os.path as osp
from typing import List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset

from ..errors import DataError, MissingFileError
from ..registry import DATASETS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


@DATASETS.register_module()
class ImageFolderDataset(BaseDataset):
    """A classification dataset laid out as ImageNet is.

    Two layouts are read:

    * folder: ``data_root/data_prefix/<class name>/<image>``; classes are the sorted sub-folder names unless
      ``classes`` is given (then only those folders are read, in that order);
    * annotation file: ``ann_file`` lists ``<path relative to data_root/data_prefix> <label>`` per line, as
      ImageNet's ``meta/val.txt`` does for the flat validation folder; ``classes`` names the labels (a list, or a
      text file with one name per line), and without it the labels are named by their numbers.

    Args:
        data_root: dataset root, e.g. ``data/imagenet``.
        data_prefix: image folder under the root, e.g. ``'train'`` or ``dict(img_path='train')``.
        ann_file: annotation file under the root ('' for the folder layout).
        classes: class names, or a path to a text file with one per line.
        extensions: image file endings to read (case-insensitive).
        **kwargs: further arguments of :class:`mmengine.dataset.BaseDataset` (``pipeline``, ``test_mode``...).
    """

    def __init__(self,
                 data_root: str,
                 data_prefix: Union[str, dict] = '',
                 ann_file: str = '',
                 classes: Optional[Union[str, Sequence[str]]] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 **kwargs):
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        self.extensions = tuple(ext.lower() for ext in extensions)
        self._given_classes = classes
        super().__init__(data_root=data_root, data_prefix=data_prefix, ann_file=ann_file, **kwargs)

    def _read_classes(self) -> Optional[List[str]]:
        classes = self._given_classes
        if isinstance(classes, str):
            path = classes if osp.isabs(classes) else osp.join(self.data_root, classes)
            if not osp.isfile(path):
                raise MissingFileError(f'class list file {path} does not exist; give `classes` as a list of '
                                       'names or a text file with one name per line')
            with open(path) as f:
                classes = [line.strip() for line in f if line.strip()]
        return list(classes) if classes is not None else None

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix['img_path']
        if not osp.isdir(img_dir):
            raise MissingFileError(f'image folder {img_dir} does not exist; check data_root and data_prefix '
                                   '(see data/README.md for the expected layout)')
        classes = self._read_classes()
        data_list = self._from_ann_file(img_dir, classes) if self.ann_file else self._from_folders(img_dir, classes)
        if not data_list:
            raise DataError(f'no images with endings {self.extensions} found under {img_dir}: put them in '
                            f'{img_dir}/<class name>/ or list them in an ann_file (see data/README.md)')
        return data_list

    def _from_folders(self, img_dir: str, classes: Optional[List[str]]) -> List[dict]:
        found = sorted(entry.name for entry in os.scandir(img_dir) if entry.is_dir())
        if not found:
            raise DataError(f'{img_dir} holds no class sub-folders: the folder layout is '
                            '<root>/<split>/<class name>/<image>; for a flat folder give an ann_file')
        if classes is None:
            classes = found
        missing = [name for name in classes if name not in found]
        if missing:
            raise DataError(f'class folders {missing[:5]} are missing under {img_dir}')
        self._metainfo['classes'] = tuple(classes)
        data_list = []
        for label, name in enumerate(classes):
            class_dir = osp.join(img_dir, name)
            for root, _, files in sorted(os.walk(class_dir, followlinks=True)):
                for file in sorted(files):
                    if file.lower().endswith(self.extensions):
                        data_list.append(dict(img_path=osp.join(root, file), gt_label=label))
        return data_list

    def _from_ann_file(self, img_dir: str, classes: Optional[List[str]]) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise MissingFileError(f'annotation file {self.ann_file} does not exist')
        data_list = []
        with open(self.ann_file) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise DataError(f'{self.ann_file}:{line_no}: expected "<image path> <integer label>", '
                                    f'got {line.strip()!r}')
                data_list.append(dict(img_path=osp.join(img_dir, parts[0]), gt_label=int(parts[1])))
        labels = [item['gt_label'] for item in data_list]
        num_classes = len(classes) if classes is not None else max(labels, default=-1) + 1
        bad = [label for label in labels if not 0 <= label < num_classes]
        if bad:
            raise DataError(f'{self.ann_file}: label {bad[0]} is outside [0, {num_classes}); '
                             'check the annotation file and `classes`')
        self._metainfo['classes'] = tuple(classes) if classes is not None else tuple(map(str, range(num_classes)))
        return data_list
