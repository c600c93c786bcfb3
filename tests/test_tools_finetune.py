"""tools/finetune.py (cli/finetune.py) end to end, slow: the digits backbone fine-tuned from 32 to 48 pixels on a
5-class subset (position embeddings resampled, classifier replaced, the reported accuracy recomputed in the test from
the final checkpoint), and the ImageNet-21k -> 1k path of the shipped recipes on small fixtures (pretrain on a
21k-style synset folder with configs/pretrain/cosub_deit3-small_in21k.py, fine-tune on a 1k-style folder with
configs/finetune/deit3-small_in21k-to-in1k-224.py, both shrunk)."""
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch

import cosub_seg  # noqa: F401  (allow-lists the data classes of training checkpoints)
from cosub_seg.errors import ConfigError

from helpers import run_tool, scalars

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL = dict(patch_size=8, embed_dim=64, depth=2, num_heads=2)


def write_config(path, base, body):
    path.write_text(f'_base_ = [{osp.join(ROOT, base)!r}]\n{body}')
    return str(path)


WORKERS = 'num_workers=0, persistent_workers=False'


def top1_of(checkpoint, data_root, classes, img_size):
    """Top-1 of the checkpoint's weights on the val images of ``classes``, computed here: the network rebuilt from
    timm, the images read with OpenCV, resized with the short side to img_size (bicubic), normalised as the config."""
    from cosub_seg.models.timm_factory import create_timm_model
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    model = create_timm_model('deit3_small_patch16_224', num_classes=len(classes),
                              **dict(SMALL, embed_dim=128, depth=6, num_heads=4, img_size=img_size, init_values=0.1,
                                     class_token=False, global_pool='avg'))  # the digits config's network
    model.load_state_dict({k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')})
    model.eval()
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    correct = total = 0
    for label, name in enumerate(classes):
        folder = osp.join(data_root, 'val', name)
        for file in sorted(os.listdir(folder)):
            bgr = cv2.imread(osp.join(folder, file))
            img = cv2.resize(bgr, (img_size, img_size), interpolation=cv2.INTER_CUBIC)[..., ::-1]
            x = torch.from_numpy(((img - mean) / std).transpose(2, 0, 1).copy()).float()[None]
            with torch.no_grad():
                correct += int(model(x).argmax(1).item() == label)
            total += 1
    return 100.0 * correct / total


@pytest.mark.slow
def test_digits_fine_tuned_from_32_to_48_pixels_on_five_classes(digits_root, tmp_path, python):
    # The checkpoint: the demo's digits classifier (10 classes, 32 px) as tools/pretrain.py saves it.
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from cosub_seg.registry import MODELS
    pre_cfg = Config.fromfile(osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py'))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        source = MODELS.build(pre_cfg.model)
    checkpoint = tmp_path / 'epoch_25.pth'
    torch.save(dict(meta=dict(epoch=25), state_dict=source.state_dict()), checkpoint)
    classes = [str(d) for d in range(5)]
    config = write_config(tmp_path / 'ft.py', 'configs/finetune/deit3-tiny_digits-48.py', f"""
model = dict(num_classes=5, data_preprocessor=dict(num_classes=5))
train_dataloader = dict(batch_size=16, {WORKERS},
                        dataset=dict(dataset=dict(data_root={str(digits_root)!r}, classes={classes}, indices=64)))
val_dataloader = dict(batch_size=50, {WORKERS}, dataset=dict(data_root={str(digits_root)!r}, classes={classes}))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=2)
default_hooks = dict(logger=dict(interval=1))
""")
    work_dir = str(tmp_path / 'run')
    proc = run_tool([python, 'tools/finetune.py', config, '--checkpoint', str(checkpoint), '--work-dir', work_dir])
    log = proc.stdout + proc.stderr
    assert 'the classifier of' in log and '(10 classes) is replaced by a new one with 5 classes' in log
    final = osp.join(work_dir, 'epoch_2.pth')
    state = torch.load(final, map_location='cpu', weights_only=True)['state_dict']
    assert state['backbone.pos_embed'].shape == (1, 36, 128)  # 6x6 patches of 8 px at 48 px
    assert state['backbone.head.weight'].shape == (5, 128)
    reported = [r['accuracy/top1'] for r in scalars(work_dir) if 'accuracy/top1' in r]
    assert len(reported) == 2  # validated after each epoch
    assert reported[-1] == pytest.approx(top1_of(final, str(digits_root), classes, 48), abs=1e-6)


def test_finetune_refuses_a_config_without_a_checkpoint_and_a_segmentation_config(tmp_path, capsys):
    from cosub_seg.cli.finetune import main
    with pytest.raises(SystemExit) as stop:
        main(['configs/finetune/deit3-tiny_digits-48.py', '--checkpoint', str(tmp_path / 'missing.pth'),
              '--work-dir', str(tmp_path / 'w')])
    assert stop.value.code != 0
    err = capsys.readouterr().err
    assert 'missing.pth (model.init_cfg.checkpoint), does not exist' in err and '--checkpoint PATH' in err
    import argparse

    from cosub_seg.runtime.launch import add_finetune_args, add_train_args, apply_finetune_args, load_config
    parser = add_finetune_args(add_train_args(argparse.ArgumentParser()))
    seg = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
    args = parser.parse_args([seg])
    with pytest.raises(ConfigError, match='not a classification config'):
        apply_finetune_args(load_config(seg), args)
    args = parser.parse_args(['configs/pretrain/cosub_deit3-tiny_digits.py', '--work-dir', str(tmp_path / 'w')])
    with pytest.raises(ConfigError, match='names no checkpoint to fine-tune from'):
        apply_finetune_args(load_config(args.config, work_dir=args.work_dir), args)


def write_synsets(digits_root, out, digits=6, per_class=6):
    """A 21k-style release (one folder of images per synset, no splits) from the digits' training images."""
    for d in range(digits):
        folder = out / f'n{d:08d}'
        folder.mkdir(parents=True)
        src = osp.join(digits_root, 'train', str(d))
        for i, file in enumerate(sorted(os.listdir(src))[:per_class]):
            shutil.copy(osp.join(src, file), folder / f'n{d:08d}_{i}.JPEG')


@pytest.mark.slow
def test_imagenet21k_pretraining_then_1k_fine_tuning_with_the_shipped_recipes(digits_root, tmp_path, python):
    in21k = tmp_path / 'in21k'
    write_synsets(digits_root, in21k)
    small = dict(SMALL, img_size=32)
    pre = write_config(tmp_path / 'pre21k.py', 'configs/pretrain/cosub_deit3-small_in21k.py', f"""
model = dict(num_classes=6, model_kwargs={small}, data_preprocessor=dict(num_classes=6))
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'), dict(type='ResizeShortSide', size=32),
    dict(type='RandomCrop', size=32, padding=4), dict(type='RandomFlip', prob=0.5), dict(type='PackClsInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'), dict(type='ResizeShortSide', size=32),
    dict(type='CenterCrop', crop_size=32), dict(type='PackClsInputs')]
train_dataloader = dict(batch_size=4, {WORKERS}, dataset=dict(dataset=dict(
    data_root={str(in21k)!r}, num_classes=6, val_per_class=1, pipeline=train_pipeline)))
val_dataloader = dict(batch_size=6, {WORKERS}, dataset=dict(
    data_root={str(in21k)!r}, num_classes=6, val_per_class=1, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
custom_hooks = []
""")
    pre_dir = str(tmp_path / 'pre')
    run_tool([python, 'tools/pretrain.py', pre, '--work-dir', pre_dir])
    records = scalars(pre_dir)
    assert any('loss_peer' in r for r in records) and any('accuracy/top1' in r for r in records)
    # 6 synsets x 6 images, one of each held out: 30 training images, batch 4 (drop_last) -> 7 iterations.
    assert max(r['iter'] for r in records if 'loss' in r) == 7

    ft = write_config(tmp_path / 'ft1k.py', 'configs/finetune/deit3-small_in21k-to-in1k-224.py', f"""
model = dict(num_classes=10, model_kwargs={dict(SMALL, img_size=48)}, data_preprocessor=dict(num_classes=10))
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'), dict(type='ResizeShortSide', size=48),
    dict(type='RandomCrop', size=48, padding=4), dict(type='RandomFlip', prob=0.5), dict(type='PackClsInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'), dict(type='ResizeShortSide', size=48),
    dict(type='CenterCrop', crop_size=48), dict(type='PackClsInputs')]
train_dataloader = dict(batch_size=4, {WORKERS}, dataset=dict(dataset=dict(
    data_root={str(digits_root)!r}, indices=16, pipeline=train_pipeline)))
val_dataloader = dict(batch_size=20, {WORKERS}, dataset=dict(
    data_root={str(digits_root)!r}, indices=20, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
custom_hooks = []
""")
    ft_dir = str(tmp_path / 'ft')
    proc = run_tool([python, 'tools/finetune.py', ft, '--checkpoint', osp.join(pre_dir, 'epoch_1.pth'),
                     '--work-dir', ft_dir])
    log = proc.stdout + proc.stderr
    assert '(6 classes) is replaced by a new one with 10 classes' in log
    pre_state = torch.load(osp.join(pre_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)['state_dict']
    ft_state = torch.load(osp.join(ft_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)['state_dict']
    assert pre_state['backbone.pos_embed'].shape == (1, 16, 64) and ft_state['backbone.pos_embed'].shape == (1, 36, 64)
    assert ft_state['backbone.head.weight'].shape == (10, 64)
    assert any('accuracy/top1' in r for r in scalars(ft_dir))
