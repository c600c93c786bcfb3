"""mmseg's own tools/test.py on our configs: --show-dir draws every image (SegVisualizationHook's interval of 50
batches left most images, and a short set all of them, undrawn)."""
import glob
import os.path as osp
import subprocess

import cv2
import mmseg
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cosub_seg.datasets.digit_scenes import write_digit_scenes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'


def test_the_visualization_hook_draws_every_batch_when_asked():
    for config in ('configs/seg/upernet_cosub-deit3-tiny_digitscenes.py',
                   'configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py'):
        hook = Config.fromfile(osp.join(ROOT, config)).default_hooks.visualization
        assert (hook.type, hook.interval, hook.get('draw', False)) == ('PredictionVisualizationHook', 1, False), config


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
    assert all(cv2.imread(p).shape == (128, 3 * 128, 3) for p in pictures)  # image | truth | prediction
