"""on_bad_sample='skip' survives a run of consecutive bad files (what a truncated copy or extraction leaves): a bad
sample's stand-in is a random other sample, chosen from the draw's seed so a resumed run makes the same choice."""
import glob
import os
import os.path as osp
import re
import shutil

import pytest
import torch
from mmengine.registry import DefaultScope

from cosub_seg.runtime import BadSampleError, CheckedDataset, Draw

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BAD_IN_A_ROW = 12


def digit_folder(tmp_path, digits_root, images=30, bad=range(3, 3 + BAD_IN_A_ROW)):
    """``images`` digits of class 0 as a training folder, those at the sorted positions ``bad`` truncated to a PNG
    signature."""
    folder = tmp_path / 'data' / 'train' / '0'
    folder.mkdir(parents=True)
    for name in sorted(os.listdir(osp.join(digits_root, 'train', '0')))[:images]:
        shutil.copy(osp.join(digits_root, 'train', '0', name), folder / name)
    files = sorted(str(folder / name) for name in os.listdir(folder))
    for index in bad:
        with open(files[index], 'wb') as f:
            f.write(b'\x89PNG\r\n\x1a\n')
    return str(tmp_path / 'data'), files


def checked(root, **kwargs):
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        return CheckedDataset(dict(type='ImageFolderDataset', data_root=root, data_prefix='train',
                                   pipeline=[dict(type='LoadImageFromFile'), dict(type='PackClsInputs')]),
                              on_bad_sample='skip', **kwargs)


def test_twelve_bad_files_in_a_row_are_skipped_with_random_stand_ins(tmp_path, digits_root):
    root, files = digit_folder(tmp_path, digits_root)
    dataset = checked(root)
    bad = set(files[3:3 + BAD_IN_A_ROW])
    skipped, stand_ins = 0, []
    for index in range(len(files)):
        sample = dataset[Draw(index, seed=1000 + index)]
        reports = sample['data_samples'].metainfo.get('skipped_bad_samples', [])
        assert sample['data_samples'].img_path not in bad
        if files[index] in bad:
            assert reports and reports[0].startswith(f'index {index}, img_path={files[index]} (')
            stand_ins.append(files.index(sample['data_samples'].img_path))
        else:
            assert reports == []
        skipped += len(reports)
    assert skipped >= BAD_IN_A_ROW  # each bad file once, and any bad stand-in drawn on the way
    # The stand-ins are spread over the dataset, not the next index (which, 12 times in a row, was bad).
    assert len(set(stand_ins)) > 3 and set(stand_ins) != {3 + BAD_IN_A_ROW}
    # The same draw gets the same stand-in in any process and after a resume.
    again = checked(root)
    for index in range(3, 3 + BAD_IN_A_ROW):
        first, second = dataset[Draw(index, seed=1000 + index)], again[Draw(index, seed=1000 + index)]
        assert first['data_samples'].img_path == second['data_samples'].img_path
        assert torch.equal(first['inputs'], second['inputs'])


def test_a_folder_of_mostly_bad_files_still_stops_with_the_limit(tmp_path, digits_root):
    root, files = digit_folder(tmp_path, digits_root, images=12, bad=range(12))
    with pytest.raises(BadSampleError, match=r'^10 training samples in a row failed \(a sample and its random '
                                             r'stand-ins\), which points at the pipeline or the data folder'):
        checked(root)[Draw(0, seed=5)]
    with pytest.raises(BadSampleError, match=r'^3 training samples in a row failed'):
        checked(root, max_failures_in_a_row=3)[Draw(0, seed=5)]


@pytest.mark.slow
def test_pretraining_skips_twelve_bad_files_in_a_row_and_counts_them(digits_root, tmp_path, python):
    from test_pretrain_tool import digits_options, run_tool
    data = tmp_path / 'digits'
    shutil.copytree(digits_root, data)
    train = sorted(glob.glob(str(data / 'train' / '*' / '*.png')))
    for path in train[:BAD_IN_A_ROW]:  # the first 12 images of the set, consecutive indices 0-11
        with open(path, 'wb') as f:
            f.write(b'\x89PNG\r\n\x1a\n')
    # An epoch of the first 48 images in order (12 of them bad, in a row), at a batch of 4.
    options = digits_options(str(data), epochs=1, per_epoch_images=48) + [
        'train_dataloader.dataset.on_bad_sample=skip', 'train_dataloader.sampler.sampler.shuffle=False',
        'val_dataloader.dataset.indices=4']
    proc = run_tool([python, 'tools/pretrain.py', 'configs/pretrain/cosub_deit3-tiny_digits.py', '--work-dir',
                     str(tmp_path / 'run'), '--cfg-options', *options])
    log = proc.stdout + proc.stderr
    named = {int(i) for i in re.findall(r'skipped bad training sample index (\d+), img_path=\S+ ', log)}
    assert named == set(range(BAD_IN_A_ROW))  # each of the 12 (also when drawn as another one's stand-in)
    totals = [int(t) for t in re.findall(r'bad training samples skipped at iteration \d+, (\d+) in all', log)]
    assert totals[-1] >= BAD_IN_A_ROW
    checkpoint = torch.load(osp.join(tmp_path, 'run', 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert checkpoint['message_hub']['runtime_info']['skipped_bad_samples'] == totals[-1]
    assert checkpoint['meta']['iter'] == 12  # training went on: 48 draws at a batch of 4
