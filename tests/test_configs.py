"""configs/: every shipped recipe (configs/pretrain/*.py, configs/finetune/*.py, configs/seg/*.py) builds its model
and its optimiser, exactly as the config says (constructor, layer decay, weight-decay rule), and takes one training
step at a tiny input size with a finite loss that moves the weights; the digit-scenes config starts from the
checkpoint `make demo` writes; the segmentation configs' visualization hook draws every batch when asked.
The transfer recipes on Cityscapes, Pascal Context 59 and COCO-Stuff-164k (6 families x 3 sets) are the exception:
each has its settings checked against its dataset and its family's ADE20k recipe, six of them step (each family
once), and the backbones of the rest that differ from a stepped one are built and run (see TRANSFER_STEPPED).

The architectures stay full size (a recipe bug usually lives in the family, e.g. a timm class without
``group_matcher()``); only the input, the batch and the class count shrink. The layer ids of every family are
checked in test_engine_layer_decay.py; the end-to-end runs of the pretraining recipes through tools/pretrain.py are
in test_tools_pretrain.py (slow).
"""
import copy
import functools
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
FINETUNE = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/finetune/*.py')))
SEG = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/seg/*.py')))
# The transfer recipes: every family of the ADE20k recipes on three more sets, with the settings each set must have.
# Stepping all 18 took 153 s on 2 shared cores (75 s on quiet ones); so each is checked against its set and its
# family's ADE20k recipe (test_transfer_recipe_*), and a diagonal of six steps: each family once, each set twice, the
# families that take img_size on the sets where it differs from ADE20k's 512 (Cityscapes' (512, 1024), Pascal
# Context's 480).
TRANSFER_SETS = {
    'cityscapes-512x1024': dict(dataset='CityscapesDataset', data_root='data/cityscapes/', num_classes=19,
                                crop=(512, 1024), stride=(341, 683), batch=2, reduce_zero_label=None),
    'pascal-context59-480x480': dict(dataset='PascalContextDataset59', data_root='data/VOCdevkit/VOC2010/',
                                     num_classes=59, crop=(480, 480), stride=(320, 320), batch=4,
                                     reduce_zero_label=True),
    'coco-stuff164k-512x512': dict(dataset='COCOStuffDataset', data_root='data/coco_stuff164k', num_classes=171,
                                   crop=(512, 512), stride=(341, 341), batch=4, reduce_zero_label=None),
}
TRANSFER_FAMILIES = ('deit3-base', 'swin-base', 'convnext-base', 'regnety-16gf', 'pit-b', 'xcit-s12')
TRANSFER = {f'configs/seg/upernet_cosub-{family}_{name}.py': (family, name)
            for family in TRANSFER_FAMILIES for name in TRANSFER_SETS}
TRANSFER_STEPPED = {
    'configs/seg/upernet_cosub-deit3-base_cityscapes-512x1024.py',
    'configs/seg/upernet_cosub-swin-base_cityscapes-512x1024.py',
    'configs/seg/upernet_cosub-pit-b_pascal-context59-480x480.py',
    'configs/seg/upernet_cosub-xcit-s12_pascal-context59-480x480.py',
    'configs/seg/upernet_cosub-convnext-base_coco-stuff164k-512x512.py',
    'configs/seg/upernet_cosub-regnety-16gf_coco-stuff164k-512x512.py',
}
SEG_STEPPED = [config for config in SEG if config not in TRANSFER or config in TRANSFER_STEPPED]
# timm modules whose models take img_size (position embeddings, windows): shrunk to the tiny size.
TAKES_IMG_SIZE = {'vision_transformer', 'deit', 'swin_transformer', 'pit', 'xcit'}
TINY_CLS, TINY_SEG, CLASSES = 32, 64, 5
# ViT-L and ViT-H recipes step with 6 of their blocks (their width, optimiser and drop path kept): at full depth the
# ViT-H step alone took 2 minutes on 2 cores. 6 blocks still give the four distinct outputs UperNet's neck takes.
SHALLOW_ARCHS, SHALLOW_DEPTH = ('deit3_large_patch16_224', 'deit3_huge_patch14_224'), 6


def test_every_config_folder_is_covered():
    assert len(PRETRAIN) >= 9 and len(SEG) >= 9 and len(FINETUNE) >= 10, (PRETRAIN, SEG, FINETUNE)


def _check_step_moved_weights(before: dict, model: torch.nn.Module, first: str, last: str) -> None:
    """The step reached both ends of the network: the first backbone parameter and the classifier changed (some
    blocks may legitimately get no gradient in step one, e.g. RegNet's zero-initialised last BatchNorm), and every
    parameter is still finite."""
    after = {name: p.detach() for name, p in model.named_parameters()}
    first_name = next(name for name in after if name.startswith(first))
    assert not torch.equal(before[first_name], after[first_name]), first_name
    assert not torch.equal(before[last], after[last]), last
    assert all(torch.isfinite(p).all() for p in after.values())


@pytest.mark.parametrize('config', PRETRAIN + FINETUNE)
def test_pretraining_recipe_builds_and_trains_one_step(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    if model_module(cfg.model.arch) in TAKES_IMG_SIZE:
        cfg.model.model_kwargs['img_size'] = TINY_CLS
    if cfg.model.arch in SHALLOW_ARCHS:
        cfg.model.model_kwargs['depth'] = SHALLOW_DEPTH
    if config in FINETUNE or config.endswith('_in21k.py'):
        # Their architectures step at full depth in the ImageNet-1k pretraining recipes; what these add is the
        # recipe (loss, targets, optimiser, schedule), which two blocks exercise as well as twelve.
        cfg.model.model_kwargs['depth'] = 2
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


@pytest.mark.parametrize('config', SEG_STEPPED)
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


def test_every_transfer_recipe_is_there_and_each_family_and_set_steps():
    on_sets = {c for c in SEG if any(f'_{name}.py' in c for name in TRANSFER_SETS)}
    assert on_sets == set(TRANSFER), on_sets ^ set(TRANSFER)
    assert TRANSFER_STEPPED <= set(SEG_STEPPED) and TRANSFER_STEPPED <= set(TRANSFER)
    assert {TRANSFER[c][0] for c in TRANSFER_STEPPED} == set(TRANSFER_FAMILIES)
    assert {TRANSFER[c][1] for c in TRANSFER_STEPPED} == set(TRANSFER_SETS)


@functools.lru_cache(maxsize=None)
def _read_only_config(config: str) -> Config:
    """A recipe loaded once for the transfer tests, which only read it (about 0.5 s a load)."""
    return Config.fromfile(osp.join(ROOT, config))


def _ade20k_recipe(family: str) -> Config:
    return _read_only_config(f'configs/seg/upernet_cosub-{family}_ade20k-512x512.py')


def _expected_transfer_model(family: str, name: str) -> dict:
    """The family's ADE20k model with only what the set changes: crop (preprocessor, img_size where the family
    takes it), class count of both heads, slide windows."""
    spec = TRANSFER_SETS[name]
    model = copy.deepcopy(_ade20k_recipe(family).model.to_dict())
    model['data_preprocessor']['size'] = spec['crop']
    if model_module(model['backbone']['arch']) in TAKES_IMG_SIZE:
        model['backbone']['img_size'] = spec['crop']
    model['decode_head']['num_classes'] = model['auxiliary_head']['num_classes'] = spec['num_classes']
    model['test_cfg'].update(mode='slide', crop_size=spec['crop'], stride=spec['stride'])
    return model


def _tuples(value):
    """Lists as tuples, all the way down: a config reads (512, 1024) back as a list after a dump, not here."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(item) for item in value)
    return value


@pytest.mark.parametrize('config', sorted(TRANSFER))
def test_transfer_recipe_has_its_sets_settings_and_its_familys_model(config):
    family, name = TRANSFER[config]
    spec = TRANSFER_SETS[name]
    cfg = _read_only_config(config)
    ade = _ade20k_recipe(family)
    # The model is the family's ADE20k model but for crop, classes and windows; the optimiser is the same.
    assert _tuples(cfg.model.to_dict()) == _tuples(_expected_transfer_model(family, name))
    assert cfg.optim_wrapper == ade.optim_wrapper
    assert cfg.model.backbone.init_cfg.checkpoint == f'work_dirs/cosub_{family}_in1k/epoch_800.pth'
    # The set: mmseg's dataset class and root, checked training data, the batch of mmseg's 4-GPU recipe.
    train = cfg.train_dataloader
    assert train.batch_size == spec['batch']
    assert (train.sampler.type, train.sampler.sampler.type) == ('ReproducibleSampler', 'InfiniteSampler')
    assert (train.dataset.type, train.dataset.on_bad_sample) == ('CheckedDataset', 'raise')
    datasets = dict(train=train.dataset.dataset, val=cfg.val_dataloader.dataset, test=cfg.test_dataloader.dataset)
    for split, dataset in datasets.items():
        assert (dataset.type, dataset.data_root) == (spec['dataset'], spec['data_root']), split
        pipeline = [t['type'] for t in dataset.pipeline]
        at = pipeline.index('LoadAnnotations')
        load, check = dataset.pipeline[at], dataset.pipeline[at + 1]
        assert (check.type, check.num_classes) == ('CheckSegAnnotation', spec['num_classes']), split
        assert check.get('ignore_index', 255) == 255 and load.get('reduce_zero_label') == spec['reduce_zero_label']
        assert pipeline.count('CheckSegAnnotation') == 1, split
    crops = [t['crop_size'] for t in datasets['train'].pipeline if t['type'] == 'RandomCrop']
    assert crops == [spec['crop']]
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'PerClassIoUMetric'
    # The schedule: seg_adamw_160k.py at 80k iterations, validated and saved every 8,000.
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (80000, 8000)
    assert [(s.type, s.begin, s.end) for s in cfg.param_scheduler] == [('LinearLR', 0, 1500),
                                                                         ('PolyLR', 1500, 80000)]
    assert [s.type for s in ade.param_scheduler] == ['LinearLR', 'PolyLR']
    assert (cfg.default_hooks.checkpoint.interval, cfg.default_hooks.checkpoint.max_keep_ckpts) == (8000, 3)


def _same_size_form(backbone) -> dict:
    """A backbone config with img_size 512 written as (512, 512), as timm reads it."""
    backbone = _tuples(backbone.to_dict())
    if isinstance(backbone.get('img_size'), int):
        backbone['img_size'] = (backbone['img_size'],) * 2
    return backbone


@pytest.mark.parametrize('config', sorted(c for c in TRANSFER if c not in TRANSFER_STEPPED))
def test_transfer_recipe_backbone_that_no_step_covers_builds_and_runs(config):
    """A backbone the steps do not build (the step of its ADE20k recipe or of a stepped transfer recipe): built at
    the recipe's img_size and run at the tiny size, its feature maps of the widths the heads take."""
    family, name = TRANSFER[config]
    cfg = _read_only_config(config)
    stepped = [_read_only_config(c).model.backbone for c in TRANSFER_STEPPED if TRANSFER[c][0] == family]
    same = [_same_size_form(backbone) for backbone in [_ade20k_recipe(family).model.backbone] + stepped]
    if _same_size_form(cfg.model.backbone) in same:
        pytest.skip('the same backbone steps in another recipe')
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = MODELS.build(dict(cfg.model.backbone.to_dict(), init_cfg=None)).eval()
        neck = MODELS.build(cfg.model.neck.to_dict()).eval() if 'neck' in cfg.model else None
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, TINY_SEG, TINY_SEG))
        if neck is not None:
            features = neck(features)
    widths = [features[i].shape[1] for i in cfg.model.decode_head.in_index]
    assert widths == list(cfg.model.decode_head.in_channels)
    assert features[cfg.model.auxiliary_head.in_index].shape[1] == cfg.model.auxiliary_head.in_channels


def test_the_seg_config_defaults_to_the_checkpoint_make_demo_writes():
    # tools/pipeline.py pretrains in <work dir>/pretrain; MMEngine names the last checkpoint epoch_<max_epochs>.pth.
    epochs = Config.fromfile(osp.join(ROOT, PRETRAIN_CONFIG)).train_cfg.max_epochs
    expected = osp.join(demo_work_dir(), 'pretrain', f'epoch_{epochs}.pth')
    assert expected == 'work_dirs/demo/pretrain/epoch_15.pth'
    assert Config.fromfile(osp.join(ROOT, SEG_CONFIG)).model.backbone.init_cfg.checkpoint == expected


def test_the_visualization_hook_draws_every_batch_when_asked():
    for config in ('configs/seg/upernet_cosub-deit3-tiny_digitscenes.py',
                   'configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py'):
        hook = Config.fromfile(osp.join(ROOT, config)).default_hooks.visualization
        assert (hook.type, hook.interval, hook.get('draw', False)) == ('PredictionVisualizationHook', 1, False), config


def test_the_demo_segmentor_builds_the_pretrained_network_and_draws_its_classifiers_from_n_0_0_1():
    """Issue 13: the digit-scenes config builds the network of the digits pretraining (average pooling, LayerScale
    0.1: a random-initialisation baseline must be the same network), and both heads' classifier layers start from
    N(0, 0.1), not mmseg's N(0, 0.01), which kept the demo predicting background everywhere."""
    from mmseg.registry import MODELS
    pretrain = Config.fromfile(osp.join(ROOT, PRETRAIN_CONFIG)).model.model_kwargs
    seg_cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    seg = seg_cfg.model.backbone.model_kwargs
    assert {k: v for k, v in pretrain.items() if k != 'img_size'} == dict(seg)
    seg_cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(seg_cfg.model)
    model.init_weights()
    for head in (model.decode_head, model.auxiliary_head):
        weight = head.conv_seg.weight.detach().flatten()
        # The sample std of n normal draws has a standard error of about std / sqrt(2 n): 0.1 / sqrt(2 * 704) for 704.
        assert abs(weight.std().item() - 0.1) < 5 * 0.1 / math.sqrt(2 * weight.numel())
        assert torch.count_nonzero(head.conv_seg.bias) == 0
    assert model.backbone.model.cls_token is None
    assert model.backbone.model.blocks[0].ls1.gamma.detach().eq(0.1).all()
