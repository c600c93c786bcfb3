"""configs/: every shipped recipe (configs/pretrain/*.py, configs/seg/*.py) builds its model and its optimiser,
exactly as the config says (constructor, layer decay, weight-decay rule), and takes one training step at a tiny
input size with a finite loss that moves the weights; the digit-scenes config starts from the checkpoint `make demo`
writes; the segmentation configs' visualization hook draws every batch when asked.

The architectures stay full size (a recipe bug usually lives in the family, e.g. a timm class without
``group_matcher()``); only the input, the batch and the class count shrink. The layer ids of every family are
checked in test_engine_layer_decay.py; the end-to-end runs of the pretraining recipes through tools/pretrain.py are
in test_tools_pretrain.py (slow).
"""
import glob
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement, PixelData
from mmseg.structures import SegDataSample

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.models.timm_factory import model_module
from cosub_seg.runtime.launch import use_bn_without_gpu

from helpers import demo_work_dir

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
PRETRAIN_CONFIG = 'configs/pretrain/cosub_deit3-tiny_digits.py'
PRETRAIN = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/pretrain/*.py')))
SEG = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/seg/*.py')))
# timm modules whose models take img_size (position embeddings, windows): shrunk to the tiny size.
TAKES_IMG_SIZE = {'vision_transformer', 'deit', 'swin_transformer', 'pit', 'xcit'}
TINY_CLS, TINY_SEG, CLASSES = 32, 64, 5
# ViT-L and ViT-H recipes step with 6 of their blocks (their width, optimiser and drop path kept): at full depth the
# ViT-H step alone took 2 minutes on 2 cores. 6 blocks still give the four distinct outputs UperNet's neck takes.
SHALLOW_ARCHS, SHALLOW_DEPTH = ('deit3_large_patch16_224', 'deit3_huge_patch14_224'), 6


def test_every_config_folder_is_covered():
    assert len(PRETRAIN) >= 9 and len(SEG) >= 9, (PRETRAIN, SEG)


def _check_step_moved_weights(before: dict, model: torch.nn.Module, first: str, last: str) -> None:
    """The step reached both ends of the network: the first backbone parameter and the classifier changed (some
    blocks may legitimately get no gradient in step one, e.g. RegNet's zero-initialised last BatchNorm), and every
    parameter is still finite."""
    after = {name: p.detach() for name, p in model.named_parameters()}
    first_name = next(name for name in after if name.startswith(first))
    assert not torch.equal(before[first_name], after[first_name]), first_name
    assert not torch.equal(before[last], after[last]), last
    assert all(torch.isfinite(p).all() for p in after.values())


@pytest.mark.parametrize('config', PRETRAIN)
def test_pretraining_recipe_builds_and_trains_one_step(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    if model_module(cfg.model.arch) in TAKES_IMG_SIZE:
        cfg.model.model_kwargs['img_size'] = TINY_CLS
    if cfg.model.arch in SHALLOW_ARCHS:
        cfg.model.model_kwargs['depth'] = SHALLOW_DEPTH
    cfg.model.num_classes = cfg.model.data_preprocessor.num_classes = CLASSES
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        from cosub_seg.registry import MODELS
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    torch.manual_seed(0)
    batch = 2  # mixup / cutmix need an even batch
    data = dict(inputs=[torch.randint(0, 256, (3, TINY_CLS, TINY_CLS), dtype=torch.uint8) for _ in range(batch)],
                data_samples=[BaseDataElement(gt_label=torch.tensor([i % CLASSES])) for i in range(batch)])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    log = model.train_step(data, wrapper)
    assert set(log) == {'loss', 'loss_label', 'loss_peer'}
    assert math.isfinite(log['loss'].item())
    # MMEngine sums the terms whose name holds 'loss'.
    assert log['loss'].item() == pytest.approx(log['loss_label'].item() + log['loss_peer'].item(), rel=1e-5)
    if cfg.model.num_submodels > 1:
        assert log['loss_peer'].item() > 0  # BCE towards sigmoid targets is never 0
    head = [name for name in before if name.startswith('backbone.') and name.endswith('weight')][-1]
    _check_step_moved_weights(before, model, 'backbone.', head)


def _seg_batch(num_classes: int, size: int, batch: int = 2):
    data = dict(inputs=[], data_samples=[])
    for _ in range(batch):
        data['inputs'].append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
        label = torch.randint(0, num_classes, (1, size, size))
        label[:, :4] = 255  # ignored pixels
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(size, size), pad_shape=(size, size), ori_shape=(size, size)))
        data['data_samples'].append(sample)
    return data


@pytest.mark.parametrize('config', SEG)
def test_segmentation_recipe_builds_and_trains_one_step(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.size = (TINY_SEG, TINY_SEG)
    if cfg.model.backbone.arch in SHALLOW_ARCHS:
        cfg.model.backbone.model_kwargs = dict(cfg.model.backbone.get('model_kwargs') or {}, depth=SHALLOW_DEPTH)
    cfg.model.decode_head.num_classes = cfg.model.auxiliary_head.num_classes = CLASSES
    use_bn_without_gpu(cfg.model)
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    # The config's optimiser: its type, base lr and (for layer decay) a smaller lr for the stem than for the head.
    optimizer = wrapper.optimizer
    assert type(optimizer).__name__ == cfg.optim_wrapper.optimizer.type
    lrs = [group['lr'] for group in optimizer.param_groups]
    assert max(lrs) == pytest.approx(cfg.optim_wrapper.optimizer.lr)
    if 'layer_decay_rate' in cfg.optim_wrapper.get('paramwise_cfg', {}):
        stem_lr = next(g['lr'] for g in optimizer.param_groups if g['layer_id'] == 0)
        layers = max(g['layer_id'] for g in optimizer.param_groups)
        assert stem_lr == pytest.approx(max(lrs) * cfg.optim_wrapper.paramwise_cfg.layer_decay_rate ** layers)
    torch.manual_seed(0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    log = model.train_step(_seg_batch(CLASSES, TINY_SEG), wrapper)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(log)
    assert all(math.isfinite(value.item()) for value in log.values())
    # Random labels over CLASSES classes: the decode head's cross-entropy starts near ln(CLASSES).
    assert log['decode.loss_ce'].item() == pytest.approx(math.log(CLASSES), rel=0.5)
    _check_step_moved_weights(before, model, 'backbone.', 'decode_head.conv_seg.weight')


def test_the_seg_config_defaults_to_the_checkpoint_make_demo_writes():
    # tools/pipeline.py pretrains in <work dir>/pretrain; MMEngine names the last checkpoint epoch_<max_epochs>.pth.
    epochs = Config.fromfile(osp.join(ROOT, PRETRAIN_CONFIG)).train_cfg.max_epochs
    expected = osp.join(demo_work_dir(), 'pretrain', f'epoch_{epochs}.pth')
    assert expected == 'work_dirs/demo/pretrain/epoch_25.pth'
    assert Config.fromfile(osp.join(ROOT, SEG_CONFIG)).model.backbone.init_cfg.checkpoint == expected


def test_the_visualization_hook_draws_every_batch_when_asked():
    for config in ('configs/seg/upernet_cosub-deit3-tiny_digitscenes.py',
                   'configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py'):
        hook = Config.fromfile(osp.join(ROOT, config)).default_hooks.visualization
        assert (hook.type, hook.interval, hook.get('draw', False)) == ('PredictionVisualizationHook', 1, False), config
