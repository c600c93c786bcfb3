"""cosub_seg/datasets/folder.py: ImageFolderDataset reads its classes from sub-folders or from an annotation file (the
same pairs either way) and names missing or empty folders and a bad annotation line."""
import os.path as osp

import pytest

from cosub_seg.datasets import ImageFolderDataset


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
