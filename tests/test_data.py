"""Datasets, transforms, the repeated-augmentation sampler and the digits preparation."""
import hashlib
import os
import os.path as osp
import random

import cv2
import numpy as np
import pytest

from cosub_seg.datasets import (ColorJitter, ImageFolderDataset, RandomCrop, RandomResizedCrop, RepeatAugSampler,
                                ResizeShortSide, Solarize)
from cosub_seg.datasets.digits import load_digit_split, write_digits


def tree_digest(root):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            digest.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_prepare_digits_is_deterministic_and_stratified(tmp_path, digits_root):
    again = tmp_path / 'digits'
    counts = write_digits(str(again))
    assert counts == dict(train=1437, val=360)
    assert tree_digest(digits_root) == tree_digest(str(again))
    split = load_digit_split()
    assert not set(split['train']) & set(split['val'])
    assert len(split['train']) + len(split['val']) == 1797
    # Stratified: each class's share of val is its share of the whole, within one image.
    labels = split['labels']
    for c in range(10):
        expected = (labels == c).sum() * 360 / 1797
        assert abs((labels[split['val']] == c).sum() - expected) <= 1


def test_prepare_digits_cli_writes_the_layout(tmp_path, python):
    import subprocess
    out = tmp_path / 'd'
    proc = subprocess.run([python, 'tools/prepare_data.py', 'digits', '--out', str(out)], check=True,
                          cwd=osp.dirname(osp.dirname(__file__)), capture_output=True, text=True)
    assert '] 1797/1797, ' in proc.stdout and '] 750/750, ' in proc.stdout  # progress bars: digits, then scenes
    img = cv2.imread(str(out / 'train' / '0' / '0000.png'))
    assert img.shape == (32, 32, 3)
    with open(out / 'meta' / 'val.txt') as f:
        first = f.readline().split()
    assert osp.isfile(out / 'val' / first[0]) and first[0].split('/')[0] == first[1]


def test_folder_dataset_reads_classes_from_sub_folders(digits_root):
    ds = ImageFolderDataset(data_root=digits_root, data_prefix='val', lazy_init=False)
    assert len(ds) == 360
    assert ds.metainfo['classes'] == tuple(str(i) for i in range(10))
    item = ds.get_data_info(0)
    assert item['gt_label'] == int(osp.basename(osp.dirname(item['img_path'])))


def test_annotation_file_layout_matches_folder_layout(digits_root):
    by_folder = ImageFolderDataset(data_root=digits_root, data_prefix='val')
    by_file = ImageFolderDataset(data_root=digits_root, data_prefix='val', ann_file='meta/val.txt',
                                 classes='meta/classes.txt')
    pairs = lambda ds: sorted((ds.get_data_info(i)['img_path'], ds.get_data_info(i)['gt_label'])  # noqa: E731
                              for i in range(len(ds)))
    assert pairs(by_folder) == pairs(by_file)


def test_missing_or_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        ImageFolderDataset(data_root=str(tmp_path), data_prefix='nowhere')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no class sub-folders'):
        ImageFolderDataset(data_root=str(tmp_path), data_prefix='empty')


def test_bad_annotation_line_names_file_and_line(tmp_path):
    (tmp_path / 'imgs').mkdir()
    (tmp_path / 'ann.txt').write_text('a.png 0\nb.png cat\n')
    with pytest.raises(ValueError, match=r'ann.txt:2'):
        ImageFolderDataset(data_root=str(tmp_path), data_prefix='imgs', ann_file='ann.txt')


def test_random_resized_crop_size_and_content():
    random.seed(0)
    img = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (50, 1, 3))  # value = column index
    out = RandomResizedCrop(size=(20, 30), scale=(1.0, 1.0), ratio=(2.0, 2.0))(dict(img=img))
    assert out['img'].shape == (20, 30, 3)
    # scale 1 and ratio 2 on a 50x100 image is the whole image: columns still increase left to right.
    assert out['img'][0, 0, 0] < 10 and out['img'][0, -1, 0] > 90


def test_resize_short_side_keeps_aspect():
    out = ResizeShortSide(size=32)(dict(img=np.zeros((64, 128, 3), np.uint8)))
    assert out['img'].shape == (32, 64, 3)


def test_random_crop_with_reflect_padding():
    random.seed(1)
    img = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    out = RandomCrop(size=4, padding=2)(dict(img=img))['img']
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode='reflect')
    assert any((padded[t:t + 4, l:l + 4] == out).all() for t in range(5) for l in range(5))  # noqa: E741


def test_solarize_inverts_bright_pixels():
    img = np.array([[[0, 127, 128]], [[200, 255, 10]]], np.uint8)
    out = Solarize(thr=128)(dict(img=img))['img']
    np.testing.assert_array_equal(out, [[[0, 127, 127]], [[55, 0, 10]]])


def test_color_jitter_keeps_dtype_and_range():
    random.seed(0)
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = ColorJitter(0.3, 0.3, 0.3)(dict(img=img))['img']
    assert out.dtype == np.uint8 and out.shape == img.shape and not np.array_equal(out, img)


class _Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_repeat_aug_sampler_deals_repeats_across_ranks(monkeypatch):
    import cosub_seg.datasets.samplers as samplers
    n, world = 10, 2
    per_rank = []
    for rank in range(world):
        monkeypatch.setattr(samplers, 'get_dist_info', lambda rank=rank: (rank, world))
        sampler = RepeatAugSampler(_Sized(n), shuffle=False, num_repeats=3, selected_round=0, seed=0)
        per_rank.append(list(sampler))
    # Repeated list 0,0,0,1,1,1,...; rank r takes every second element; each keeps ceil(10 / 2) = 5 per epoch.
    assert per_rank[0] == [0, 0, 1, 2, 2]
    assert per_rank[1] == [0, 1, 1, 2, 3]
    assert len(per_rank[0]) == len(sampler) == 5


def test_repeat_aug_sampler_shuffles_per_epoch():
    sampler = RepeatAugSampler(_Sized(512), shuffle=True, num_repeats=3, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert len(first) == 512 and first != list(sampler)
    # Every index that appears, appears in runs of its repeats.
    assert first[0] == first[1] == first[2]
