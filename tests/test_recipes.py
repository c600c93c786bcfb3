"""Every shipped recipe (configs/pretrain/*.py, configs/seg/*.py) builds its model and its optimiser, exactly as the
config says (constructor, layer decay, weight-decay rule), and takes one training step at a tiny input size with a
finite loss that moves the weights; and layer-wise lr decay places every backbone parameter of every family.

The architectures stay full size (a recipe bug usually lives in the family, e.g. a timm class without
``group_matcher()``); only the input, the batch and the class count shrink. The end-to-end runs of the pretraining
recipes through tools/pretrain.py are in test_pretrain_tool.py (slow).
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
from cosub_seg.runtime.launch import use_bn_without_gpu
from cosub_seg.engine.layer_decay import backbone_layer_ids
from cosub_seg.models.timm_factory import model_module

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/pretrain/*.py')))
SEG = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/seg/*.py')))
# timm modules whose models take img_size (position embeddings, windows): shrunk to the tiny size.
TAKES_IMG_SIZE = {'vision_transformer', 'deit', 'swin_transformer', 'pit', 'xcit'}
TINY_CLS, TINY_SEG, CLASSES = 32, 64, 5


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


# Families and the blocks their layer ids must follow: stem 0, then every block in order, 1..depth.
FAMILIES = {
    'deit3_small_patch16_224': lambda m: [f'blocks.{i}.' for i in range(len(m.blocks))],
    'xcit_small_12_p16_224': lambda m: [f'blocks.{i}.' for i in range(len(m.blocks))],
    'swin_base_patch4_window7_224': lambda m: [f'layers.{s}.blocks.{i}.' for s, stage in enumerate(m.layers)
                                               for i in range(len(stage.blocks))],
    'convnext_base': lambda m: [f'stages.{s}.blocks.{i}.' for s, stage in enumerate(m.stages)
                                for i in range(len(stage.blocks))],
    'regnety_160': lambda m: [f's{s}.b{i}.' for s in range(1, 5)
                              for i in range(1, len(list(getattr(m, f's{s}').children())) + 1)],
    'pit_b_224': lambda m: [f'transformers.{s}.blocks.{i}.' for s, stage in enumerate(m.transformers)
                            for i in range(len(stage.blocks))],
}


@pytest.mark.parametrize('arch', sorted(FAMILIES))
def test_layer_ids_of_every_family_follow_its_blocks(arch):
    """Worked from the module tree: the stem is layer 0, block n (counted over all stages) is layer n + 1, and a
    stage's downsampling / pooling layer shares the layer of the stage's first block."""
    from cosub_seg.models import TimmSegBackbone
    model = TimmSegBackbone(arch).model
    layer_of = backbone_layer_ids(model)
    assert set(layer_of) == {name for name, _ in model.named_parameters()}
    blocks = FAMILIES[arch](model)
    for depth, prefix in enumerate(blocks, start=1):
        names = [n for n in layer_of if n.startswith(prefix)]
        assert names and {layer_of[n] for n in names} == {depth}, (prefix, {layer_of[n] for n in names})
    in_blocks = [n for n in layer_of if any(n.startswith(p) for p in blocks)]
    others = {n: layer_of[n] for n in layer_of if n not in in_blocks}
    stem = {n for n, layer in others.items() if layer == 0}
    assert stem and all(n.split('.')[0] in ('patch_embed', 'pos_embed', 'cls_token', 'stem') for n in stem), stem
    # The rest are downsampling layers, each with the first block of the stage it opens.
    for name, layer in others.items():
        if layer != 0:
            first_of_stage = [i for i, p in enumerate(blocks, start=1) if p.startswith(_stage_prefix(name))]
            assert layer == first_of_stage[0], (name, layer)


def _stage_prefix(name: str) -> str:
    """'layers.2.downsample.norm.weight' -> 'layers.2.'; 'stages.1.downsample.0.weight' -> 'stages.1.';
    'transformers.1.pool.fc.weight' -> 'transformers.1.'."""
    return '.'.join(name.split('.')[:2]) + '.'


def test_layer_decay_refuses_a_model_it_cannot_order():
    from cosub_seg.engine.layer_decay import backbone_layer_ids

    class NoMatcher(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.Linear(2, 2)

    with pytest.raises(TypeError, match='NoMatcher has no group_matcher.*GROUP_MATCHERS'):
        backbone_layer_ids(NoMatcher())

    class PartialMatcher(NoMatcher):
        def __init__(self):
            super().__init__()
            self.extra = torch.nn.Linear(2, 2)

        def group_matcher(self, coarse=False):
            return dict(stem=r'^nothing', blocks=r'^blocks')

    with pytest.raises(ValueError, match=r"does not place 2 parameter\(s\), e.g. \['extra.weight', 'extra.bias'\]"):
        backbone_layer_ids(PartialMatcher())
