"""cosub_seg/runtime/launch.py: the command line and the config loading of the training tools. --cfg-options keys are
checked (an unknown key with a suggestion, a top-level variable refused with the keys to set instead, a dataset
setting on the CheckedDataset wrapper moved to the dataset it wraps); the --amp, --compile and --tensorboard
switches; SyncBN becomes BN without a GPU; a deterministic run gets the cuBLAS workspace torch requires; a missing
pretrained checkpoint is reported before anything is built."""
import argparse
import importlib
import importlib.util
import os
import os.path as osp
import subprocess

import pytest
import torch
from mmengine.config import Config

from cosub_seg.runtime.launch import UnknownConfigKeyError, add_train_args, config_from_args, enable_tensorboard

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
PRETRAIN_CONFIG = 'configs/pretrain/cosub_deit3-tiny_digits.py'


def parse(config, *options):
    parser = add_train_args(argparse.ArgumentParser())
    return config_from_args(parser.parse_args([osp.join(ROOT, config), '--cfg-options', *options]))


@pytest.mark.parametrize('option, message', [
    ('train_dataloder.batch_size=4', "has no key 'train_dataloder' at the top level.*Did you mean 'train_dataloader'"),
    ('max_epoch=3', "has no key 'max_epoch' at the top level.*Did you mean 'max_epochs'"),
    ('model.model_kwarg.depth=2', "has no key 'model_kwarg' at model.*Did you mean 'model_kwargs'"),
    ('train_dataloader.dataset.dataset.pipeline.9.size=3', r'pipeline in .* is a list of 5 items'),
])
def test_an_unknown_config_key_is_refused_with_a_suggestion(option, message):
    with pytest.raises(UnknownConfigKeyError, match=message):
        parse(PRETRAIN_CONFIG, option)


def test_known_keys_and_new_module_arguments_are_merged():
    cfg = parse(PRETRAIN_CONFIG, 'train_dataloader.batch_size=5',
                'train_dataloader.dataset.dataset.indices=8', 'model.model_kwargs.depth=2')
    assert cfg.train_dataloader.batch_size == 5
    assert cfg.train_dataloader.dataset.dataset.indices == 8 and cfg.model.model_kwargs.depth == 2


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


def test_command_line_switches_compile_and_bf16_for_both_stages():
    """--compile sets MMEngine's compile=True; --amp gives bf16 autocast on a CPU (AmpOptimWrapper on a GPU)."""
    import argparse

    from cosub_seg.runtime.launch import add_train_args, config_from_args
    for config in ('configs/pretrain/cosub_deit3-tiny_digits.py',
                   'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'):
        args = add_train_args(argparse.ArgumentParser()).parse_args([config, '--compile', '--amp'])
        cfg = config_from_args(args)
        assert cfg.compile is True
        expected = 'AmpOptimWrapper' if torch.cuda.is_available() else 'AutocastOptimWrapper'
        assert cfg.optim_wrapper.type == expected
        assert cfg.optim_wrapper.dtype == ('float16' if torch.cuda.is_available() else 'bfloat16')
        plain = config_from_args(add_train_args(argparse.ArgumentParser()).parse_args([config]))
        assert 'compile' not in plain and plain.optim_wrapper.type == 'OptimWrapper'


def test_use_bn_without_gpu_rewrites_every_syncbn_in_nested_dicts_and_lists(monkeypatch):
    """Without a GPU every dict whose type is 'SyncBN', at any depth of dicts, lists and tuples, becomes 'BN' and
    nothing else changes (compared with a copy the test rewrites by hand); with a GPU the config is left alone."""
    import copy

    from cosub_seg.runtime import launch

    def config():
        return dict(
            type='CosubEncoderDecoder',
            backbone=dict(type='TimmSegBackbone', norm_cfg=dict(type='SyncBN', requires_grad=True)),
            decode_head=dict(norm_cfg=dict(type='SyncBN'), loss_decode=[dict(type='CrossEntropyLoss')]),
            auxiliary_head=[dict(norm_cfg=dict(type='SyncBN', eps=1e-3)), dict(norm_cfg=dict(type='GN'))],
            necks=(dict(layers=[dict(norm=dict(type='SyncBN'))]), ),
            norm_name='SyncBN',  # a string, not a norm config: stays
        )
    expected = config()
    expected['backbone']['norm_cfg']['type'] = 'BN'
    expected['decode_head']['norm_cfg']['type'] = 'BN'
    expected['auxiliary_head'][0]['norm_cfg']['type'] = 'BN'
    expected['necks'][0]['layers'][0]['norm']['type'] = 'BN'
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    cfg = config()
    launch.use_bn_without_gpu(cfg)
    assert cfg == expected
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: True)
    cfg = config()
    launch.use_bn_without_gpu(cfg)
    assert cfg == config()
    # The same on an MMEngine Config (ConfigDict nodes), as the tools call it.
    from mmengine.config import Config
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    mm = Config(dict(model=copy.deepcopy(config())))
    launch.use_bn_without_gpu(mm.model)
    assert mm.model.to_dict() == expected


def test_a_deterministic_run_gets_the_cublas_workspace_torch_requires(monkeypatch):
    """randomness.deterministic=True: CUBLAS_WORKSPACE_CONFIG=:4096:8 where it is unset (older torch refuses every
    CUDA matrix product in deterministic mode without it), a value the user set is kept, and a run that is not
    deterministic leaves the variable alone."""
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', 'placeholder')  # restored after the test
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG')
    parse(PRETRAIN_CONFIG, 'randomness.deterministic=False')
    assert 'CUBLAS_WORKSPACE_CONFIG' not in os.environ
    parse(PRETRAIN_CONFIG, 'randomness.deterministic=True')
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':16:8')
    parse(SEG_CONFIG, 'randomness.deterministic=True', 'model.backbone.init_cfg=None')
    assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':16:8'


def test_tensorboard_switch_adds_the_backend_once():
    cfg = Config(dict(visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])))
    enable_tensorboard(cfg)
    enable_tensorboard(cfg)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend', 'TensorboardVisBackend']


def test_tensorboard_switch_without_the_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'tensorboard' else real(name))
    cfg = Config(dict(visualizer=dict(type='Visualizer', vis_backends=[])))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'cosub_seg\[tensorboard\]'"):
        enable_tensorboard(cfg)


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
