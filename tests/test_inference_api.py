"""The exported segmentor through mmseg's inference API (``init_model`` + ``inference_model``, ``MMSegInferencer``):
the prediction of an image is the one the model's own ``test_step`` gives on the same image."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cosub_seg.convert import export_segmentor
from cosub_seg.datasets import CheckSegAnnotation
from cosub_seg.datasets.digit_scenes import write_digit_scenes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A randomly initialised digit-scenes segmentor, saved as a training checkpoint would be and exported."""
    from mmseg.registry import MODELS
    tmp = tmp_path_factory.mktemp('export')
    scenes = str(tmp / 'scenes')
    write_digit_scenes(scenes, num_train=1, num_val=2)
    cfg = Config.fromfile(SEG_CONFIG)
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


def own_prediction(model, image_path):
    """The model's test_step on the image through the config's own test pipeline (annotation included)."""
    from mmengine.dataset import Compose
    with DefaultScope.overwrite_default_scope('mmseg'):
        pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
    seg_map = image_path.replace('images', 'annotations').replace('.jpg', '.png')
    sample = pipeline(dict(img_path=image_path, seg_map_path=seg_map, reduce_zero_label=True, seg_fields=[]))
    with torch.no_grad():
        [result] = model.test_step(dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']]))
    return result.pred_sem_seg.data


def test_inference_model_on_the_exported_segmentor_matches_its_test_step(exported):
    from mmseg.apis import inference_model, init_model
    model = init_model(exported['config'], exported['checkpoint'], device='cpu')
    result = inference_model(model, exported['image'])
    prediction = result.pred_sem_seg.data
    assert prediction.shape == (1, 128, 128)  # the 128x128 scene, at its own size
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
    assert prediction.shape == (1, 128, 128)
    model = init_model(exported['config'], exported['checkpoint'], device='cpu')
    assert torch.equal(prediction, own_prediction(model, exported['image']))
    # Its label map as the numpy array it returns by default: the same classes.
    labels = inferencer(exported['image'])['predictions']
    assert labels.shape == (128, 128) and np.array_equal(labels, prediction[0].numpy())


def test_annotation_check_passes_images_without_annotation_and_keeps_checking_named_ones():
    check = CheckSegAnnotation(num_classes=11)
    inference = dict(img_path='scene.jpg', img=np.zeros((4, 4, 3), np.uint8), ori_shape=(4, 4))
    assert check(inference) is inference  # nothing to check: what inference_model and MMSegInferencer give it
    with pytest.raises(KeyError, match='found no gt_seg_map for ann/scene.png: put it after LoadAnnotations'):
        check(dict(inference, seg_map_path='ann/scene.png'))  # named but not loaded: the pipeline is wrong
    with pytest.raises(ValueError, match=r'holds label values \[11\] outside \[0, 11\)'):
        check(dict(inference, seg_map_path='ann/scene.png', gt_seg_map=np.full((4, 4), 11, np.uint8)))
