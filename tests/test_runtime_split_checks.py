"""cosub_seg/runtime/split_checks.py: the validation and test splits are checked before their first use as the
training split is (folders, files, decoding and annotations, with one line naming the file), and the class counts of
the heads, the datasets and the annotation checks must agree. The slow tests show both checks stopping
tools/train_seg.py before its first step."""
import os
import os.path as osp
import subprocess

import cv2
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.runtime import check_split, check_split_configs

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'


@pytest.fixture
def scenes(tmp_path):
    root = str(tmp_path / 'scenes')
    write_digit_scenes(root, num_train=4, num_val=3)
    return root


def val_split(root):
    from mmseg.registry import DATASETS
    cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    cfg.val_dataloader.dataset.data_root = root
    with DefaultScope.overwrite_default_scope('mmseg'):
        return DATASETS.build(cfg.val_dataloader.dataset)


def val_file(root, kind, index):
    folder, suffix = ('images', 'jpg') if kind == 'image' else ('annotations', 'png')
    return osp.join(root, folder, 'validation', f'digitscene_val_{index:05d}.{suffix}')


def test_a_good_split_passes_and_a_corrupt_image_is_named(scenes):
    assert check_split(val_split(scenes), 'validation', 'val_dataloader') >= 0
    corrupt = val_file(scenes, 'image', 1)
    with open(corrupt, 'wb') as f:
        f.write(b'not an image')
    with pytest.raises(ValueError) as info:
        check_split(val_split(scenes), 'validation', 'val_dataloader')
    assert str(info.value).startswith(
        f'1 sample(s) of the validation split (val_dataloader: DigitScenesDataset) cannot be loaded, e.g. '
        f'img_path={corrupt}, seg_map_path={val_file(scenes, "annotation", 1)} (AssertionError: failed to load image')
    # Only the file checks: the corrupt image exists.
    assert check_split(val_split(scenes), 'validation', 'val_dataloader', decode=False) >= 0


def test_a_missing_annotation_and_an_annotation_of_another_size_are_named(scenes):
    missing = val_file(scenes, 'annotation', 2)
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=f'1 file\\(s\\) of the validation split \\(val_dataloader: '
                                                f'DigitScenesDataset\\) do not exist, e.g. {missing}:'):
        check_split(val_split(scenes), 'validation', 'val_dataloader')
    cv2.imwrite(missing, cv2.imread(val_file(scenes, 'annotation', 0), cv2.IMREAD_UNCHANGED)[:80, :70])
    with pytest.raises(ValueError, match=f'annotation {missing} is 70x80 \\(w x h\\) but its image '):
        check_split(val_split(scenes), 'validation', 'val_dataloader')


def test_split_configs_name_a_missing_folder_and_an_empty_split(scenes, tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    cfg.val_dataloader.dataset.data_root = scenes
    cfg.test_dataloader = cfg.val_dataloader
    check_split_configs(cfg)
    cfg.val_dataloader.dataset.data_prefix.img_path = 'images/valid'
    with pytest.raises(FileNotFoundError, match=f"the validation split \\(val_dataloader.dataset\\): "
                                                f"DigitScenesDataset: folder {scenes}/images/valid "):
        check_split_configs(cfg, splits=('val', ))
    empty = tmp_path / 'empty'
    for folder in ('images/validation', 'annotations/validation'):
        (empty / folder).mkdir(parents=True)
    cfg.test_dataloader = Config.fromfile(osp.join(ROOT, SEG_CONFIG)).test_dataloader
    cfg.test_dataloader.dataset.data_root = str(empty)
    with pytest.raises(ValueError, match=r'the test split \(test_dataloader.dataset: DigitScenesDataset, data_root=.*'
                                         r'empty.*\) holds no samples'):
        check_split_configs(cfg, splits=('test', ))


def test_class_counts_of_heads_datasets_and_annotation_checks_must_agree():
    from types import SimpleNamespace
    from cosub_seg.datasets import CheckSegAnnotation
    from cosub_seg.runtime import check_class_counts

    class Split:
        metainfo = dict(classes=('background', 'digit 0', 'digit 1'))
        pipeline = SimpleNamespace(transforms=[CheckSegAnnotation(num_classes=3)])

    model = SimpleNamespace(decode_head=SimpleNamespace(num_classes=3), auxiliary_head=SimpleNamespace(num_classes=3))
    check_class_counts(model, [('train_dataloader', Split()), ('val_dataloader', Split())])
    model.auxiliary_head.num_classes = 2
    with pytest.raises(ValueError, match=r'model.auxiliary_head.num_classes: 2; the classes of train_dataloader '
                                         r'\(Split: background, digit 0, digit 1\): 3; CheckSegAnnotation'):
        check_class_counts(model, [('train_dataloader', Split())])
    check_class_counts(SimpleNamespace(), [('train_dataloader', Split())])  # a classifier: no heads to compare


def seg_run(python, scenes, work_dir, *extra):
    options = ['model.backbone.init_cfg=None', f'train_dataloader.dataset.dataset.data_root={scenes}',
               f'val_dataloader.dataset.data_root={scenes}', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
               'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
               'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
               'val_dataloader.persistent_workers=False', 'default_hooks.logger.interval=1', *extra]
    return subprocess.run([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', work_dir, '--cfg-options',
                           *options], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize('damage', ['corrupt image', 'missing annotation'])
def test_bad_validation_data_stops_training_before_the_first_step(python, scenes, tmp_path, damage):
    if damage == 'corrupt image':
        path = val_file(scenes, 'image', 2)
        with open(path, 'wb') as f:
            f.write(b'\xff\xd8\xff\xe0' + bytes(64))  # a JPEG signature and nothing readable
        expected = f'ValueError: 1 sample(s) of the validation split (val_dataloader: DigitScenesDataset) cannot be ' \
                   f'loaded, e.g. img_path={path}, '
    else:
        path = val_file(scenes, 'annotation', 0)
        os.remove(path)
        expected = f'FileNotFoundError: 1 file(s) of the validation split (val_dataloader: DigitScenesDataset) do ' \
                   f'not exist, e.g. {path}: '
    proc = seg_run(python, scenes, str(tmp_path / 'run'))
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(expected), line
    assert 'Iter(train)' not in proc.stdout + proc.stderr  # before the first training step
    assert not any(name.endswith('.pth') for name in os.listdir(tmp_path / 'run'))


@pytest.mark.slow
def test_heads_with_another_class_count_are_refused_before_the_first_step(python, tmp_path):
    from cosub_seg.datasets.digit_scenes import write_digit_scenes
    scenes = str(tmp_path / 'scenes')
    write_digit_scenes(scenes, num_train=4, num_val=2)
    proc = subprocess.run([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', str(tmp_path / 'run'),
                           '--cfg-options', 'model.backbone.init_cfg=None',
                           f'train_dataloader.dataset.data_root={scenes}',
                           f'val_dataloader.dataset.data_root={scenes}', 'train_dataloader.num_workers=0',
                           'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
                           'val_dataloader.persistent_workers=False', 'model.decode_head.num_classes=10',
                           'model.auxiliary_head.num_classes=10'], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith('ValueError: the class counts do not agree: model.decode_head.num_classes: 10; '
                           'model.auxiliary_head.num_classes: 10; the classes of train_dataloader (DigitScenesDataset: '
                           'background, digit 0, digit 1, digit 2, ...): 11; CheckSegAnnotation.num_classes in the '
                           'pipeline of train_dataloader: 11;')
    assert 'IndexError' not in proc.stdout + proc.stderr and 'Iter(train)' not in proc.stdout + proc.stderr
