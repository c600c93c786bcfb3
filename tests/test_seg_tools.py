"""Transfer stage end to end: pretrain -> hand-off -> fine-tune -> evaluate, with our tools and mmseg's own."""
import glob
import os.path as osp
import re

import cv2
import mmseg
import numpy as np
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


def miou_of_saved_predictions(pred_dir, scenes, num_classes=11):
    """mIoU (%) of the label maps a test wrote with --out, worked here from the files: the validation annotations
    reduced as the config reduces them (ADE20k's convention, reduce_zero_label: 0 -> ignored, v -> v - 1), the saved
    predictions shifted the same way (mmseg writes prediction + 1 when labels were reduced), a confusion matrix by
    np.bincount, IoU = diag / (row + col - diag), averaged over the classes that occur."""
    labels = sorted(glob.glob(osp.join(scenes, 'annotations', 'validation', '*.png')))
    assert len(labels) == 4
    counts = np.zeros(num_classes * num_classes, np.int64)
    for path in labels:
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED).astype(np.int64) - 1
        pred = cv2.imread(osp.join(pred_dir, osp.basename(path)), cv2.IMREAD_UNCHANGED).astype(np.int64) - 1
        assert pred.shape == label.shape and pred.min() >= 0 and pred.max() < num_classes
        keep = label >= 0
        counts += np.bincount(label[keep] * num_classes + pred[keep], minlength=num_classes ** 2)
    counts = counts.reshape(num_classes, num_classes).astype(np.float64)
    diag = np.diag(counts)
    with np.errstate(invalid='ignore', divide='ignore'):
        return float(np.nanmean(diag / (counts.sum(0) + counts.sum(1) - diag)) * 100)


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
    [validation] = [r for r in records if 'mIoU' in r]
    assert any('decode.loss_ce' in r for r in records)
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    out = tmp_path / 'preds'
    proc = run_tool([python, 'tools/test_seg.py', SEG_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'test'),
                     '--out', str(out), '--cfg-options', *seg_options(scenes, pretrained)])
    match = re.search(r'aAcc: ([\d.]+)\s+mIoU: ([\d.]+)\s+mAcc: ([\d.]+)', proc.stdout)
    assert match, proc.stdout[-2000:]
    # The printed mIoU is the one of the predictions it wrote (2 decimals), and the one validation logged for the
    # same weights on the same scenes at the end of training.
    expected = miou_of_saved_predictions(str(out), scenes)
    assert float(match.group(2)) == pytest.approx(expected, abs=0.005 + 1e-6)
    assert validation['mIoU'] == pytest.approx(expected, abs=0.005 + 1e-6)
    assert 'digit 9' in proc.stdout + proc.stderr  # the per-class table
    assert re.search(r'\] 4/4, [\d.]+ task/s, elapsed: \d+s, ETA: +0s', proc.stdout)  # the progress bar


@pytest.mark.slow
def test_cosub_fine_tuning_through_the_tool(pretrained, scenes, tmp_path, python):
    work_dir = str(tmp_path / 'seg_cosub')
    run_tool([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', work_dir, '--cfg-options',
              *seg_options(scenes, pretrained, iters=2), 'model.num_submodels=2'])
    train = [r for r in scalars(work_dir) if 'decode.loss_peer' in r]
    assert len(train) == 2 and all(r['decode.loss_peer'] > 0 for r in train)
    # The peer term is part of the loss that was optimised: the logged total is the sum of the logged terms.
    for r in train:
        assert r['loss'] == pytest.approx(r['decode.loss_ce'] + r['decode.loss_peer'] + r['aux.loss_ce'], rel=1e-4)


@pytest.mark.slow
def test_upstream_mmseg_tools_run_our_config(pretrained, scenes, tmp_path, python):
    tools = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
    work_dir = str(tmp_path / 'upstream')
    run_tool([python, osp.join(tools, 'train.py'), SEG_CONFIG, '--work-dir', work_dir,
              '--cfg-options', *seg_options(scenes, pretrained)])
    [validation] = [r for r in scalars(work_dir) if 'mIoU' in r]
    checkpoint = glob.glob(osp.join(work_dir, 'iter_4.pth'))[0]
    out = tmp_path / 'upstream_preds'
    proc = run_tool([python, osp.join(tools, 'test.py'), SEG_CONFIG, checkpoint, '--work-dir',
                     str(tmp_path / 'upstream_test'), '--out', str(out),
                     '--cfg-options', *seg_options(scenes, pretrained)])
    # mmseg's test.py logs 'mIoU: <value>' (4 decimals of the metric's 2): that of the predictions it wrote with
    # --out, and of the validation at the end of training (same weights, same scenes).
    match = re.search(r'mIoU: ([\d.]+)', proc.stdout + proc.stderr)
    assert match, (proc.stdout + proc.stderr)[-2000:]
    expected = miou_of_saved_predictions(str(out), scenes)
    assert float(match.group(1)) == pytest.approx(expected, abs=0.005 + 1e-6)
    assert validation['mIoU'] == pytest.approx(expected, abs=0.005 + 1e-6)


@pytest.mark.slow
def test_test_seg_tta_writes_predictions_and_overlays(pretrained, scenes, tmp_path, python):
    work_dir = str(tmp_path / 'seg')
    run_tool([python, 'tools/train_seg.py', SEG_CONFIG, '--work-dir', work_dir,
              '--cfg-options', *seg_options(scenes, pretrained, iters=2)])
    out, show = tmp_path / 'preds', tmp_path / 'vis'
    proc = run_tool([python, 'tools/test_seg.py', SEG_CONFIG, osp.join(work_dir, 'iter_2.pth'), '--tta',
                     '--out', str(out), '--show-dir', str(show), '--work-dir', str(tmp_path / 'test'),
                     '--cfg-options', *seg_options(scenes, pretrained, iters=2)])
    match = re.search(r'mIoU: ([\d.]+)', proc.stdout)
    preds = sorted(out.glob('*.png'))
    assert len(preds) == 4  # one label map per validation scene
    assert match and float(match.group(1)) == pytest.approx(miou_of_saved_predictions(str(out), scenes),
                                                            abs=0.005 + 1e-6)
    overlays = glob.glob(str(show / '**' / '*.png'), recursive=True)
    assert overlays
    # The seg runtime's SideBySideSegVisualizer: image | ground truth | prediction of a 128x128 scene.
    assert all(cv2.imread(path).shape == (128, 3 * 128, 3) for path in overlays)
