"""datasets/imagenet21k.py (ImageNet21kDataset, the synset archives, and `tools/prepare_data.py imagenet21k`): the
held-out validation split against the rule worked in the test (the val_per_class smallest CRC-32 keys of each
synset's file names), disjoint and complete, independent of listing order; the class-count check; the archive layout
refused with the command that unpacks it, and the unpacking (a path outside the folder refused). Fast."""
import io
import os
import tarfile
import zlib

import cv2
import numpy as np
import pytest

from cosub_seg.datasets.imagenet21k import ImageNet21kDataset, count_synsets, unpack_class_tars
from cosub_seg.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNSETS = {'n00000001': 6, 'n00000002': 3, 'n00000003': 1}


def write_release(root, synsets=SYNSETS):
    for wnid, count in synsets.items():
        os.makedirs(root / wnid, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / wnid / f'{wnid}_{i}.JPEG'), np.full((8, 8, 3), i * 20, np.uint8))


def names(dataset):
    return [(os.path.basename(item['img_path']), item['gt_label']) for item in dataset.load_data_list()]


def test_the_held_out_split_is_the_smallest_hashes_of_each_synset_and_the_rest_trains(tmp_path):
    write_release(tmp_path)
    train = ImageNet21kDataset(data_root=str(tmp_path), split='train', val_per_class=2, num_classes=3)
    val = ImageNet21kDataset(data_root=str(tmp_path), split='val', val_per_class=2, num_classes=3)
    assert train.metainfo['classes'] == tuple(SYNSETS)
    expected_val = []
    for label, (wnid, count) in enumerate(SYNSETS.items()):
        files = sorted((f'{wnid}_{i}.JPEG' for i in range(count)), key=lambda f: zlib.crc32(f'cosub_seg/{f}'.encode()))
        # at most half of a synset is held out: 2 of 6, 1 of 3, none of 1
        expected_val += [(f, label) for f in files[:min(2, count // 2)]]
    assert sorted(names(val)) == sorted(expected_val)
    assert set(names(train)).isdisjoint(names(val))
    assert len(names(train)) + len(names(val)) == sum(SYNSETS.values())
    # The choice depends on the names only: another copy with one more file keeps the held-out ones of the others.
    write_release(tmp_path, {'n00000001': 7})
    again = ImageNet21kDataset(data_root=str(tmp_path), split='val', val_per_class=2)
    kept = [n for n in names(again) if n[0] != 'n00000001_6.JPEG']
    assert len(set(kept) & set(expected_val)) >= len(expected_val) - 1


def test_no_hold_out_reads_everything_and_a_wrong_class_count_is_refused(tmp_path):
    write_release(tmp_path)
    assert len(ImageNet21kDataset(data_root=str(tmp_path), split='val', val_per_class=0)) == 10
    with pytest.raises(DataError, match=r'3 synset folders, the model is built for 19,167 classes'):
        ImageNet21kDataset(data_root=str(tmp_path), num_classes=19167)
    with pytest.raises(DataError, match="split must be 'train' or 'val'"):
        ImageNet21kDataset(data_root=str(tmp_path), split='test')


def _tar(path, members):
    with tarfile.open(path, 'w') as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_the_archive_layout_is_refused_with_the_command_then_unpacked(tmp_path, capsys):
    jpeg = cv2.imencode('.jpg', np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    for wnid in ('n00000001', 'n00000002'):
        _tar(tmp_path / f'{wnid}.tar', {f'{wnid}_{i}.JPEG': jpeg for i in range(3)})
    with pytest.raises(DataError, match=r'2 synset archives.*prepare_data.py imagenet21k .*--unpack'):
        ImageNet21kDataset(data_root=str(tmp_path))
    import importlib.util
    spec = importlib.util.spec_from_file_location('prepare_data', os.path.join(ROOT, 'tools', 'prepare_data.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(['imagenet21k', '--root', str(tmp_path), '--unpack'])
    out = capsys.readouterr().out
    assert 'unpacked 2 synset archives' in out and '2 synset folders, 6 images' in out
    assert count_synsets(str(tmp_path)) == dict(synsets=2, images=6, archives=0)
    assert len(ImageNet21kDataset(data_root=str(tmp_path), val_per_class=1)) == 4
    assert unpack_class_tars(str(tmp_path)) == 0  # nothing left to do


def test_an_archive_writing_outside_its_folder_is_refused(tmp_path):
    _tar(tmp_path / 'n00000009.tar', {'../escaped.JPEG': b'x'})
    with pytest.raises(DataError, match=r'n00000009.tar cannot be unpacked'):
        unpack_class_tars(str(tmp_path))
    assert not (tmp_path.parent / 'escaped.JPEG').exists()
