"""tools/train_seg.py and tools/test_seg.py (cli/train_seg.py, cli/test_seg.py) end to end, and mmseg's own tools and
inference API on our configs. Slow: pretrain -> hand-off -> fine-tune -> evaluate with our tools and with mmseg's
train.py / test.py (the usual data_root override, --show-dir). Fast: ``init_model`` + ``inference_model`` and
``MMSegInferencer`` on an exported segmentor give the prediction of its own ``test_step``."""
import glob
import os.path as osp
import re
import subprocess

import cv2
import mmseg
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

from cosub_seg.convert import export_segmentor
from cosub_seg.datasets.digit_scenes import write_digit_scenes

from helpers import digits_options, own_prediction, run_tool, scalars, seg_options

SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


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
    # The seg runtime's SideBySideSegVisualizer: image | ground truth | prediction | errors of a 96x96 scene, each
    # panel 384 pixels (4x), 8-pixel gaps, a 28-pixel header and a legend of 13 entries in 2 rows (64 pixels).
    assert all(cv2.imread(path).shape == (28 + 384 + 64, 4 * 384 + 3 * 8, 3) for path in overlays)


@pytest.mark.slow
def test_mmseg_test_tool_show_dir_writes_one_picture_per_validation_image(python, tmp_path):
    from mmseg.registry import MODELS
    scenes = str(tmp_path / 'scenes')
    write_digit_scenes(scenes, num_train=1, num_val=7)
    cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    cfg.model.backbone.init_cfg = None
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.norm_cfg = dict(type='BN', requires_grad=True)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    show = tmp_path / 'show'
    test = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
    proc = subprocess.run([python, test, SEG_CONFIG, checkpoint, '--show-dir', str(show), '--work-dir',
                           str(tmp_path / 'work'), '--cfg-options', f'test_dataloader.dataset.data_root={scenes}',
                           'test_dataloader.batch_size=3', 'test_dataloader.num_workers=0',
                           'test_dataloader.persistent_workers=False'],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pictures = sorted(glob.glob(str(show / '**' / '*.png'), recursive=True))
    # 7 images in batches of 3 (3 batches): every image once, named after it.
    assert sorted(osp.basename(p) for p in pictures) == [f'test_digitscene_val_{i:05d}.jpg_0.png' for i in range(7)]
    # image | truth | prediction | errors, 384 pixels each, with header and legend (test_visualization.py)
    assert all(cv2.imread(p).shape == (28 + 384 + 64, 4 * 384 + 3 * 8, 3) for p in pictures)


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


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A randomly initialised digit-scenes segmentor, saved as a training checkpoint would be and exported."""
    from mmseg.registry import MODELS
    tmp = tmp_path_factory.mktemp('export')
    scenes = str(tmp / 'scenes')
    write_digit_scenes(scenes, num_train=1, num_val=2)
    cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    cfg.model.backbone.init_cfg = None
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.norm_cfg = dict(type='BN', requires_grad=True)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = scenes
    config = str(tmp / 'upernet_digits.py')
    cfg.dump(config)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    checkpoint = str(tmp / 'iter_4.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    paths = export_segmentor(config, checkpoint, str(tmp / 'exported'))
    image = osp.join(scenes, 'images', 'validation', 'digitscene_val_00001.jpg')
    return dict(paths, image=image, scenes=scenes)


def test_inference_model_on_the_exported_segmentor_matches_its_test_step(exported):
    from mmseg.apis import inference_model, init_model
    model = init_model(exported['config'], exported['checkpoint'], device='cpu')
    result = inference_model(model, exported['image'])
    prediction = result.pred_sem_seg.data
    assert prediction.shape == (1, 96, 96)  # the 96x96 scene, at its own size
    expected = own_prediction(model, exported['image'])
    assert torch.equal(prediction, expected)
    assert len(torch.unique(prediction)) > 1  # a real map, not a constant one
    # An image as an array (LoadImageFromNDArray) gives the same map.
    array = inference_model(model, cv2.imread(exported['image'])).pred_sem_seg.data
    assert torch.equal(array, expected)


def test_mmseg_inferencer_on_the_exported_segmentor_matches_its_test_step(exported):
    from mmseg.apis import MMSegInferencer, init_model
    inferencer = MMSegInferencer(model=exported['config'], weights=exported['checkpoint'], device='cpu')
    prediction = inferencer(exported['image'], return_datasamples=True).pred_sem_seg.data
    assert prediction.shape == (1, 96, 96)
    model = init_model(exported['config'], exported['checkpoint'], device='cpu')
    assert torch.equal(prediction, own_prediction(model, exported['image']))
    # Its label map as the numpy array it returns by default: the same classes.
    labels = inferencer(exported['image'])['predictions']
    assert labels.shape == (96, 96) and np.array_equal(labels, prediction[0].numpy())
