"""Checks of the ADE20k layout (ADEChallengeData2016) that mmseg's ADE20KDataset reads."""
import os
import os.path as osp
from typing import Dict

from ..errors import DataError, MissingFileError

ADE20K_COUNTS = dict(training=20210, validation=2000)


def check_ade20k_layout(root: str, expected: Dict[str, int] = ADE20K_COUNTS) -> Dict[str, int]:
    """Verifies ``root/images/{training,validation}/*.jpg`` and ``root/annotations/{...}/*.png``: folders present,
    one annotation per image, and the official counts. Raises ``FileNotFoundError`` or ``ValueError`` naming what is
    missing or wrong and what to do; returns the number of pairs per split."""
    hint = ('download ADEChallengeData2016.zip from the MIT Scene Parsing benchmark and unzip it so that '
            f'{root}/images and {root}/annotations exist (see data/README.md)')
    if not osp.isdir(root):
        raise MissingFileError(f'{root} does not exist: {hint}')
    counts = {}
    for split, count in expected.items():
        img_dir, ann_dir = osp.join(root, 'images', split), osp.join(root, 'annotations', split)
        for folder in (img_dir, ann_dir):
            if not osp.isdir(folder):
                raise MissingFileError(f'{folder} is missing: {hint}')
        images = {osp.splitext(f)[0] for f in os.listdir(img_dir) if f.endswith('.jpg')}
        labels = {osp.splitext(f)[0] for f in os.listdir(ann_dir) if f.endswith('.png')}
        if images - labels:
            raise DataError(f'{len(images - labels)} images in {img_dir} have no annotation in {ann_dir}, e.g. '
                            f'{sorted(images - labels)[0]}.jpg')
        if labels - images:
            raise DataError(f'{len(labels - images)} annotations in {ann_dir} have no image in {img_dir}, e.g. '
                            f'{sorted(labels - images)[0]}.png')
        if len(images) != count:
            raise DataError(f'{img_dir} holds {len(images)} images with annotations, ADE20k has {count}: '
                            'the download is incomplete or mixed with other files')
        counts[split] = len(images)
    return counts
