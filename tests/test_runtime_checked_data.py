"""cosub_seg/runtime/checked_data.py (with runtime/randomness.py): CheckedDataset and ReproducibleSampler.
Reproducible sampling (two ranks draw what one rank draws, resuming inside an epoch, a draw augments the same way
anywhere); bad training data named before or during training (images, folders, annotations, with
CheckSegAnnotation in the pipeline) or, with on_bad_sample='skip', replaced by a random other sample chosen from the
draw's seed, also for a run of consecutive bad files; dataset settings given to the wrapper reach the dataset it
wraps. The slow test skips twelve bad files in a row in a run of tools/pretrain.py."""
import glob
import os
import os.path as osp
import random
import re
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.datasets import CheckSegAnnotation
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.runtime import BadSampleError, CheckedDataset, Draw, ReproducibleSampler
from cosub_seg.runtime.checked_data import STAND_IN_DOMAIN
from cosub_seg.runtime.randomness import derive_seed, isolated_rng

from helpers import digits_options, run_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


# -------------------------------------------------------------------------- reproducible sampling (ReproducibleSampler)


class Numbers:
    """A dataset of 0..n-1 whose 'augmentation' draws one number from each global generator."""

    metainfo = dict(classes=('x', ))

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return dict(index=index, noise=(random.random(), float(np.random.rand()), torch.rand(1).item()))

    def get_data_info(self, index):
        return dict(img_path=f'{index}.png')


def draws(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return list(sampler)


def make_sampler(monkeypatch, inner, rank, world_size, n=12, seed=7):
    import mmengine.dataset.sampler as mmengine_samplers
    import cosub_seg.runtime.checked_data as checked
    import cosub_seg.datasets.samplers as samplers
    for module in (mmengine_samplers, checked, samplers):
        monkeypatch.setattr(module, 'get_dist_info', lambda: (rank, world_size))
    return ReproducibleSampler(CheckedDataset(Numbers(n), check_files=False), dict(type=inner, shuffle=True),
                               seed=seed)


@pytest.mark.parametrize('inner', ['DefaultSampler', 'RepeatAugSampler'])
def test_two_ranks_draw_what_one_rank_draws_with_the_same_seeds(monkeypatch, inner):
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        one = draws(make_sampler(monkeypatch, inner, 0, 1), epoch=3)
        ranks = [draws(make_sampler(monkeypatch, inner, r, 2), epoch=3) for r in (0, 1)]
    # Global position p * 2 + r on 2 ranks is position p * 2 + r on one: same index, same augmentation seed.
    interleaved = [d for pair in zip(*ranks) for d in pair]
    assert interleaved == one[:len(interleaved)]
    assert len({d.seed for d in one}) == len(one)  # every draw, repeats of an index included, has its own seed


def test_resuming_inside_an_epoch_and_fast_forwarding_continue_the_same_stream(monkeypatch):
    full = draws(make_sampler(monkeypatch, 'DefaultSampler', 0, 1), epoch=2)
    resumed = make_sampler(monkeypatch, 'DefaultSampler', 0, 1)
    resumed.resume_within_epoch(5)
    assert draws(resumed, epoch=2) == full[5:]
    assert draws(resumed, epoch=3) == draws(make_sampler(monkeypatch, 'DefaultSampler', 0, 1), epoch=3)
    forwarded = make_sampler(monkeypatch, 'InfiniteSampler', 0, 1)
    stream = iter(forwarded)
    forwarded.fast_forward(3)
    reference = iter(make_sampler(monkeypatch, 'InfiniteSampler', 0, 1))
    for position in range(8):
        got, want = next(stream), next(reference)
        assert (got.index, got.seed) == (want.index, want.seed)
        assert got.placeholder == (position < 3)
    assert draws(make_sampler(monkeypatch, 'DefaultSampler', 0, 1), epoch=4) != full  # epochs differ


def test_a_draw_augments_the_same_way_anywhere_and_leaves_the_global_generators_alone():
    dataset = CheckedDataset(Numbers(4), check_files=False)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    first = dataset[Draw(2, seed=1234)]
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1]) and torch.equal(torch.get_rng_state(), before[2])
    random.random()  # whatever happens in between (another worker, a resume) does not matter
    assert dataset[Draw(2, seed=1234)] == first
    assert dataset[Draw(2, seed=1235)]['noise'] != first['noise']
    with isolated_rng(1234):
        assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first['noise']
    assert dataset[Draw(0, 0, placeholder=True)] is None  # skipped batches after a resume load nothing


# ---------------------------------------------------------------------------------------------- bad training data


def clean_digit_folder(tmp_path, digits_root, images=4):
    """A copy of the first ``images`` digits of class 0 as a training folder."""
    folder = tmp_path / 'data' / 'train' / '0'
    folder.mkdir(parents=True)
    for name in sorted(os.listdir(osp.join(digits_root, 'train', '0')))[:images]:
        (folder / name).write_bytes(open(osp.join(digits_root, 'train', '0', name), 'rb').read())
    return str(tmp_path / 'data'), sorted(str(folder / f) for f in os.listdir(folder))


def checked_folder(root, **kwargs):
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        return CheckedDataset(dict(type='ImageFolderDataset', data_root=root, data_prefix='train',
                                   pipeline=[dict(type='LoadImageFromFile'), dict(type='PackClsInputs')]), **kwargs)


@pytest.mark.parametrize('damage', ['corrupt', 'truncated'])
def test_a_bad_image_names_its_file(tmp_path, digits_root, damage):
    root, files = clean_digit_folder(tmp_path, digits_root)
    data = open(files[1], 'rb').read()
    with open(files[1], 'wb') as f:
        f.write(b'not an image at all' if damage == 'corrupt' else data[:len(data) // 2])
    dataset = checked_folder(root)
    with pytest.raises(BadSampleError, match=re.escape(f'training sample index 1, img_path={files[1]} cannot be used')):
        dataset[Draw(1, 0)]
    skipping = checked_folder(root, on_bad_sample='skip')
    sample = skipping[Draw(1, 0)]
    # The stand-in is a random other sample, drawn from (STAND_IN_DOMAIN, the draw's seed, the attempt), so the same
    # draw gets the same stand-in in any process and after a resume.
    rng = np.random.default_rng(derive_seed(STAND_IN_DOMAIN, 0, 0))
    expected = next(i for i in (int(rng.integers(len(files))) for _ in range(64)) if i != 1)
    assert sample['data_samples'].img_path == files[expected]
    assert checked_folder(root, on_bad_sample='skip')[Draw(1, 0)]['data_samples'].img_path == files[expected]
    [report] = sample['data_samples'].skipped_bad_samples
    assert report.startswith(f'index 1, img_path={files[1]} (AssertionError: failed to load image')


def test_an_empty_or_misplaced_training_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'ImageFolderDataset: data_root .*nowhere is not a folder'):
        checked_folder(str(tmp_path / 'nowhere'))
    (tmp_path / 'misplaced' / 'training' / '0').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"folder .*misplaced/train \(data_root='.*misplaced' \+ "
                                                r"data_prefix.img_path='train'\) does not exist"):
        checked_folder(str(tmp_path / 'misplaced'))
    (tmp_path / 'empty' / 'train' / '0').mkdir(parents=True)
    with pytest.raises(ValueError, match=r'no images with endings .* found under .*empty/train'):
        checked_folder(str(tmp_path / 'empty'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        with pytest.raises(ValueError, match=r'DigitScenesDataset \(data_root=.*empty.*\) holds no samples'):
            CheckedDataset(dict(type='DigitScenesDataset', data_root=str(tmp_path / 'empty'),
                                data_prefix=dict(img_path='train', seg_map_path='train')))


# ----------------------------------------------------------------------------- bad files in a row, on_bad_sample='skip'


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


# --------------------------------------------------------------------------------------------- segmentation annotations


@pytest.fixture
def scenes(tmp_path):
    write_digit_scenes(str(tmp_path / 'scenes'), num_train=3, num_val=1)
    return str(tmp_path / 'scenes')


def scene_dataset(root, pipeline=()):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return CheckedDataset(dict(
            type='DigitScenesDataset', data_root=root, pipeline=list(pipeline),
            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))


def test_a_missing_annotation_is_named_before_training(scenes):
    missing = osp.join(scenes, 'annotations', 'training', 'digitscene_tra_00001.png')
    os.remove(missing)
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f'1 file(s) that DigitScenesDataset lists do not exist, e.g. {missing}:')):
        scene_dataset(scenes)


SEG_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
                dict(type='CheckSegAnnotation', num_classes=11), dict(type='PackSegInputs')]


def test_an_annotation_of_another_size_is_named_with_both_sizes(scenes):
    path = osp.join(scenes, 'annotations', 'training', 'digitscene_tra_00002.png')
    cv2.imwrite(path, cv2.imread(path, cv2.IMREAD_UNCHANGED)[:80, :70])
    dataset = scene_dataset(scenes, SEG_PIPELINE)
    dataset[Draw(0, 0)]
    with pytest.raises(BadSampleError, match=re.escape(f'annotation {path} is 70x80 (w x h) but its image ') +
                       '.*digitscene_tra_00002.jpg is 96x96'):
        dataset[Draw(2, 0)]


def test_labels_outside_the_classes_are_named(scenes):
    path = osp.join(scenes, 'annotations', 'training', 'digitscene_tra_00000.png')
    annotation = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    annotation[:2, :2] = 40  # 39 after reduce_zero_label; 11 classes
    cv2.imwrite(path, annotation)
    expected = f'annotation {path} holds label values [39] outside [0, 11) that are not the ignore index 255 (after'
    with pytest.raises(BadSampleError, match=re.escape(expected)):
        scene_dataset(scenes, SEG_PIPELINE)[Draw(0, 0)]
    # The same check in a test pipeline (no wrapper), where 0 is reduced to 255, the ignore index.
    check = CheckSegAnnotation(num_classes=11)
    ok = dict(gt_seg_map=np.array([[0, 10], [255, 3]], np.uint8), ori_shape=(2, 2))
    assert check(ok) is ok


# ---------------------------------------------------------------------------------------------- dataset settings


def test_checked_dataset_forwards_dataset_settings_given_to_it(tmp_path):
    """mmseg's tools merge --cfg-options train_dataloader.dataset.data_root=... into the wrapper's arguments."""
    from mmengine.registry import DefaultScope
    from cosub_seg.runtime import CheckedDataset
    from cosub_seg.datasets.digit_scenes import write_digit_scenes
    write_digit_scenes(str(tmp_path / 'scenes'), num_train=3, num_val=1)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = CheckedDataset(dict(type='DigitScenesDataset', data_root=str(tmp_path / 'nowhere'),
                                      data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                                      pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]),
                                 data_root=str(tmp_path / 'scenes'),
                                 pipeline={'1': dict(type='PackSegInputs', meta_keys=('img_path', ))})
    assert len(dataset) == 3 and dataset.dataset.data_root == str(tmp_path / 'scenes')
    assert dataset.dataset.pipeline.transforms[1].meta_keys == ('img_path', )
    with pytest.raises(TypeError, match=r"CheckedDataset got dataset settings \['data_root'\] but wraps a built"):
        CheckedDataset(dataset.dataset, data_root='x')


# ------------------------------------------------------------------------------------- through tools/pretrain.py (slow)


@pytest.mark.slow
def test_pretraining_skips_twelve_bad_files_in_a_row_and_counts_them(digits_root, tmp_path, python):
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
