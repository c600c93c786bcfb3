"""What a user sees when something is wrong: one line naming the file, key or value and what to do (no traceback
unless --debug), the config's default paths where `make demo` writes, and override mistakes named."""
import argparse
import os.path as osp
import re
import subprocess

import pytest
from mmengine.config import Config

from cosub_seg.runtime.launch import UnknownConfigKeyError, add_train_args, config_from_args
from cosub_seg.errors import ConfigError, DataError, MissingFileError, TrainingStopped, UserError, cli_main, one_line

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
PRETRAIN_CONFIG = 'configs/pretrain/cosub_deit3-tiny_digits.py'


def parse(config, *options):
    parser = add_train_args(argparse.ArgumentParser())
    return config_from_args(parser.parse_args([osp.join(ROOT, config), '--cfg-options', *options]))


# ---------------------------------------------------------------------------------------------- one-line errors


def test_a_user_error_is_one_line_without_traceback_and_debug_shows_it(capsys, monkeypatch):
    monkeypatch.delenv('COSUB_DEBUG', raising=False)

    @cli_main
    def main(argv=None):
        raise MissingFileError('config file nowhere.py does not exist')

    with pytest.raises(SystemExit) as exit_info:
        main(['nowhere.py'])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == 'FileNotFoundError: config file nowhere.py does not exist\n'
    with pytest.raises(MissingFileError, match='nowhere.py does not exist'):
        main(['nowhere.py', '--debug'])  # the exception itself, so Python prints its traceback

    @cli_main
    def buggy(argv=None):
        raise ZeroDivisionError('a bug, not a user error')

    with pytest.raises(ZeroDivisionError):  # anything else keeps its traceback
        buggy([])


def test_one_line_takes_off_what_mmengine_and_the_data_loader_add():
    # MMEngine's registry rebuilds an error raised while building a module with the class and file in front.
    built = ConfigError('class `CheckedDataset` in cosub_seg/datasets/checked.py: class `DigitScenesDataset` in '
                        'cosub_seg/datasets/digit_scenes.py: on_bad_sample must be "raise" or "skip", got \'ignore\'')
    assert one_line(built) == 'ValueError: on_bad_sample must be "raise" or "skip", got \'ignore\''
    # torch's data loader rebuilds a worker's error with the worker's traceback in the message.
    worker = DataError('Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):'
                       '\n  File "x.py", line 1, in f\n    raise DataError(msg)\ncosub_seg.errors.DataError: '
                       'annotation a.png is 90x100 (w x h) but its image a.jpg is 128x128: re-export it at that size\n')
    assert one_line(worker) == ('ValueError: annotation a.png is 90x100 (w x h) but its image a.jpg is 128x128: '
                                're-export it at that size')
    # The kind printed is the built-in exception: scripts matching it keep working.
    assert one_line(TrainingStopped('non-finite loss at iteration 3')).startswith('FloatingPointError: non-finite')
    assert isinstance(TrainingStopped('x'), (UserError, FloatingPointError))


def test_the_tool_prints_one_line_for_a_missing_config_and_the_traceback_with_debug(python):
    proc = subprocess.run([python, 'tools/train_seg.py', 'configs/seg/nowhere.py'], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ['FileNotFoundError: config file configs/seg/nowhere.py does not exist']
    debug = subprocess.run([python, 'tools/train_seg.py', 'configs/seg/nowhere.py', '--debug'], cwd=ROOT,
                           capture_output=True, text=True)
    assert debug.returncode == 1
    assert 'Traceback (most recent call last)' in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == ('cosub_seg.errors.MissingFileError: config file '
                                                     'configs/seg/nowhere.py does not exist')


@pytest.mark.parametrize('module', ['pretrain', 'train_seg', 'test_seg', 'pipeline', 'convert_checkpoint',
                                    'analyze_model'])
def test_every_tool_takes_debug(module, capsys):
    import importlib
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f'cosub_seg.cli.{module}').main(['--help'])
    assert exit_info.value.code == 0
    assert re.search(r'--debug +show the full traceback', capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------- item 3: demo paths


def demo_work_dir():
    """The --work-dir of tools/pipeline.py in the Makefile's demo target."""
    with open(osp.join(ROOT, 'Makefile')) as f:
        makefile = f.read()
    demo = makefile[makefile.index('\ndemo:'):]
    return re.search(r'tools/pipeline\.py .*?--work-dir (\S+)', demo, re.S).group(1)


def test_the_seg_config_defaults_to_the_checkpoint_make_demo_writes():
    # tools/pipeline.py pretrains in <work dir>/pretrain; MMEngine names the last checkpoint epoch_<max_epochs>.pth.
    epochs = Config.fromfile(osp.join(ROOT, PRETRAIN_CONFIG)).train_cfg.max_epochs
    expected = osp.join(demo_work_dir(), 'pretrain', f'epoch_{epochs}.pth')
    assert expected == 'work_dirs/demo/pretrain/epoch_25.pth'
    assert Config.fromfile(osp.join(ROOT, SEG_CONFIG)).model.backbone.init_cfg.checkpoint == expected


def test_convert_checkpoint_help_uses_the_paths_make_demo_writes():
    from cosub_seg.cli import convert_checkpoint
    iters = Config.fromfile(osp.join(ROOT, SEG_CONFIG)).train_cfg.max_iters
    work_dir = demo_work_dir()
    for text in (convert_checkpoint.__doc__, open(osp.join(ROOT, 'tools/convert_checkpoint.py')).read()):
        assert f'{work_dir}/pretrain/epoch_25.pth exported/' in text
        assert f'{work_dir}/seg/iter_{iters}.pth exported/' in text
        assert 'work_dirs/cosub_deit3-tiny_digits/' not in text and 'work_dirs/upernet_cosub' not in text


def test_a_missing_pretrained_checkpoint_names_the_option_and_what_writes_it(tmp_path, monkeypatch):
    from cosub_seg.models.seg_backbone import TimmSegBackbone, check_pretrained_checkpoint
    monkeypatch.chdir(ROOT)
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'work_dirs/demo/pretrain/epoch_25.pth')
    with pytest.raises(FileNotFoundError) as info:
        check_pretrained_checkpoint(cfg.model)
    message = str(info.value)
    assert message.startswith(f"the backbone's pretrained checkpoint {tmp_path}/work_dirs/demo/pretrain/epoch_25.pth "
                              '(model.backbone.init_cfg.checkpoint) does not exist.')
    assert '--cfg-options model.backbone.init_cfg.checkpoint=PATH' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message
    # The command that writes it, from where the path points.
    cfg.model.backbone.init_cfg.checkpoint = 'work_dirs/demo/pretrain/epoch_25.pth'
    with pytest.raises(FileNotFoundError, match=r'`make demo` writes it'):
        check_pretrained_checkpoint(cfg.model)
    cfg.model.backbone.init_cfg.checkpoint = 'work_dirs/cosub_deit3-base_in1k/epoch_800.pth'
    with pytest.raises(FileNotFoundError,
                       match=re.escape('`python tools/pretrain.py configs/pretrain/cosub_deit3-base_in1k.py` writes')):
        check_pretrained_checkpoint(cfg.model)
    cfg.model.backbone.init_cfg = None
    check_pretrained_checkpoint(cfg.model)  # random initialisation: nothing to check
    # mmseg's own tools reach the same message when the backbone loads its weights.
    backbone = TimmSegBackbone('deit3_small_patch16_224', img_size=32, model_kwargs=dict(
        patch_size=8, embed_dim=32, depth=2, num_heads=2), init_cfg=dict(type='Pretrained', checkpoint='nowhere.pth'))
    with pytest.raises(FileNotFoundError, match=r'nowhere.pth \(model.backbone.init_cfg.checkpoint\) does not exist'):
        backbone.init_weights()


def test_train_seg_without_the_demo_checkpoint_says_which_option_to_set(python, tmp_path):
    proc = subprocess.run([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', str(tmp_path / 'run'),
                           '--cfg-options', f'model.backbone.init_cfg.checkpoint={tmp_path}/nowhere.pth'],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"FileNotFoundError: the backbone's pretrained checkpoint {tmp_path}/nowhere.pth "
        '(model.backbone.init_cfg.checkpoint) does not exist. To use another file: --cfg-options '
        'model.backbone.init_cfg.checkpoint=PATH; to start from random weights: --cfg-options '
        'model.backbone.init_cfg=None']
    assert not (tmp_path / 'run').exists()  # checked before anything was built


# ---------------------------------------------------------------------------------------------- item 7: overrides


def test_a_top_level_variable_override_is_refused_with_the_keys_to_set():
    with pytest.raises(UnknownConfigKeyError) as info:
        parse(SEG_CONFIG, 'num_classes=10')
    message = str(info.value)
    assert message.startswith(f'--cfg-options num_classes: num_classes is a variable of {ROOT}/{SEG_CONFIG}, used '
                              'where the file refers to it while the file is read; changing it now would change '
                              'nothing. Set the keys that took its value instead, e.g. model.decode_head.num_classes=.'
                              '.. model.auxiliary_head.num_classes=...')
    for key in ('train_dataloader.dataset.dataset.pipeline.2.num_classes', 'val_dataloader.dataset.pipeline.2.'
                'num_classes'):
        assert f'{key}=...' in message
    assert 'train_pipeline.' not in message  # a variable too: setting it would change nothing either
    with pytest.raises(UnknownConfigKeyError, match=r'max_epochs is a variable .* e\.g\. train_cfg\.max_epochs=\.\.\.'):
        parse(PRETRAIN_CONFIG, 'max_epochs=3')
    with pytest.raises(UnknownConfigKeyError, match=r'data_root is a variable .* e\.g\. train_dataloader\.dataset\.'
                                                    r'dataset\.data_root=\.\.\. val_dataloader\.dataset\.data_root'):
        parse(PRETRAIN_CONFIG, 'data_root=/data/digits')
    # Keys something reads after parsing are still accepted.
    assert parse(PRETRAIN_CONFIG, 'load_from=x.pth', 'randomness.seed=5').randomness.seed == 5


def test_a_dataset_setting_on_the_checked_dataset_wrapper_goes_to_the_wrapped_dataset():
    cfg = parse(SEG_CONFIG, 'train_dataloader.dataset.data_root=/data/scenes',
                'train_dataloader.dataset.pipeline.4.crop_size=(32,32)', 'train_dataloader.dataset.on_bad_sample=skip')
    wrapper = cfg.train_dataloader.dataset
    assert 'data_root' not in wrapper and 'pipeline' not in wrapper
    assert wrapper.dataset.data_root == '/data/scenes'
    assert tuple(wrapper.dataset.pipeline[4].crop_size) == (32, 32)
    assert wrapper.on_bad_sample == 'skip'  # the wrapper's own setting stays on it
    with pytest.raises(UnknownConfigKeyError, match=r"has no key 'data_rot' at train_dataloader.dataset.dataset.*"
                                                    r"Did you mean 'data_root'"):
        parse(SEG_CONFIG, 'train_dataloader.dataset.data_rot.x=1')


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


@pytest.mark.slow
def test_mmseg_train_tool_takes_the_usual_data_root_override(python, tmp_path):
    import mmseg
    from cosub_seg.datasets.digit_scenes import write_digit_scenes
    scenes = str(tmp_path / 'scenes')
    write_digit_scenes(scenes, num_train=4, num_val=2)
    train = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    proc = subprocess.run([python, train, SEG_CONFIG, '--work-dir', str(tmp_path / 'run'), '--cfg-options',
                           'model.backbone.init_cfg=None', f'train_dataloader.dataset.data_root={scenes}',
                           f'val_dataloader.dataset.data_root={scenes}', 'train_cfg.max_iters=1',
                           'train_cfg.val_interval=1', 'train_dataloader.batch_size=2',
                           'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
                           'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
                           'default_hooks.checkpoint.interval=1'],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'CheckedDataset: data_root set on the DigitScenesDataset it wraps' in proc.stdout + proc.stderr
    assert osp.isfile(tmp_path / 'run' / 'iter_1.pth')


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
