"""Transfer stage end to end: pretrain -> hand-off -> fine-tune -> evaluate, with our tools and mmseg's own."""
import glob
import os.path as osp
import re

import cv2
import mmseg
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

from cosub_seg.datasets.digit_scenes import write_digit_scenes
from test_pretrain_tool import digits_options, run_tool, scalars

SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'


@pytest.fixture(scope='module')
def pretrained(digits_root, tmp_path_factory, python):
    """A checkpoint written by tools/pretrain.py (1 epoch on 8 digits)."""
    work_dir = str(tmp_path_factory.mktemp('pretrain'))
    run_tool([python, 'tools/pretrain.py', 'configs/pretrain/cosub_deit3-tiny_digits.py', '--work-dir', work_dir,
              '--cfg-options', *digits_options(digits_root, epochs=1)])
    return osp.join(work_dir, 'epoch_1.pth')


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('scenes'))
    write_digit_scenes(root, num_train=16, num_val=4)
    return root


def seg_options(scenes, checkpoint=None, iters=4):
    """Overrides that make the digit-scenes config run ``iters`` iterations on ``scenes`` at batch 2 (the backbone
    from ``checkpoint`` unless None, e.g. where tools/pipeline.py sets it)."""
    backbone = [f'model.backbone.init_cfg.checkpoint={checkpoint}'] if checkpoint else []
    return backbone + [
        f'train_dataloader.dataset.dataset.data_root={scenes}', f'val_dataloader.dataset.data_root={scenes}',
        f'test_dataloader.dataset.data_root={scenes}',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
        'param_scheduler.0.end=1', 'param_scheduler.1.begin=1', f'param_scheduler.1.end={iters}',
    ]


@pytest.mark.slow
def test_pretrain_checkpoint_survives_init_weights(pretrained):
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.backbone.init_cfg.checkpoint = pretrained
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    model.init_weights()  # MMEngine's initialisation of the whole segmentor runs after the backbone's loading
    state = torch.load(pretrained, map_location='cpu', weights_only=True)['state_dict']
    torch.testing.assert_close(model.backbone.model.blocks[2].attn.qkv.weight,
                               state['backbone.blocks.2.attn.qkv.weight'])
    torch.testing.assert_close(model.backbone.model.patch_embed.proj.weight, state['backbone.patch_embed.proj.weight'])


@pytest.mark.slow
def test_train_seg_then_test_seg(pretrained, scenes, tmp_path, python):
    work_dir = str(tmp_path / 'seg')
    run_tool([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', work_dir,
              '--cfg-options', *seg_options(scenes, pretrained)])
    records = scalars(work_dir)
    assert any('mIoU' in r for r in records)
    assert any('decode.loss_ce' in r for r in records)
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    proc = run_tool([python, 'tools/test_seg.py', SEG_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'test'),
                     '--cfg-options', *seg_options(scenes, pretrained)])
    match = re.search(r'aAcc: ([\d.]+)\s+mIoU: ([\d.]+)\s+mAcc: ([\d.]+)', proc.stdout)
    assert match, proc.stdout[-2000:]
    assert 0 <= float(match.group(2)) <= 100
    assert 'digit 9' in proc.stdout + proc.stderr  # the per-class table
    assert re.search(r'\] 4/4, [\d.]+ task/s, elapsed: \d+s, ETA: +0s', proc.stdout)  # the progress bar


@pytest.mark.slow
def test_cosub_fine_tuning_through_the_tool(pretrained, scenes, tmp_path, python):
    work_dir = str(tmp_path / 'seg_cosub')
    run_tool([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', work_dir, '--cfg-options',
              *seg_options(scenes, pretrained, iters=2), 'model.num_submodels=2'])
    train = [r for r in scalars(work_dir) if 'decode.loss_peer' in r]
    assert train and all(r['decode.loss_peer'] > 0 for r in train)


@pytest.mark.slow
def test_upstream_mmseg_tools_run_our_config(pretrained, scenes, tmp_path, python):
    tools = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
    work_dir = str(tmp_path / 'upstream')
    run_tool([python, osp.join(tools, 'train.py'), SEG_CONFIG, '--work-dir', work_dir,
              '--cfg-options', *seg_options(scenes, pretrained)])
    assert any('mIoU' in r for r in scalars(work_dir))
    checkpoint = glob.glob(osp.join(work_dir, 'iter_4.pth'))[0]
    proc = run_tool([python, osp.join(tools, 'test.py'), SEG_CONFIG, checkpoint, '--work-dir',
                     str(tmp_path / 'upstream_test'), '--cfg-options', *seg_options(scenes, pretrained)])
    assert 'mIoU' in proc.stdout + proc.stderr


@pytest.mark.slow
def test_test_seg_tta_writes_predictions_and_overlays(pretrained, scenes, tmp_path, python):
    work_dir = str(tmp_path / 'seg')
    run_tool([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', work_dir,
              '--cfg-options', *seg_options(scenes, pretrained, iters=2)])
    out, show = tmp_path / 'preds', tmp_path / 'vis'
    proc = run_tool([python, 'tools/test_seg.py', SEG_CONFIG, osp.join(work_dir, 'iter_2.pth'), '--tta',
                     '--out', str(out), '--show-dir', str(show), '--work-dir', str(tmp_path / 'test'),
                     '--cfg-options', *seg_options(scenes, pretrained, iters=2)])
    assert re.search(r'mIoU: [\d.]+', proc.stdout)
    preds = sorted(out.glob('*.png'))
    assert len(preds) == 4  # one label map per validation scene
    overlays = glob.glob(str(show / '**' / '*.png'), recursive=True)
    assert overlays
    # The seg runtime's SideBySideSegVisualizer: image | ground truth | prediction of a 128x128 scene.
    assert all(cv2.imread(path).shape == (128, 3 * 128, 3) for path in overlays)
