"""cosub_seg/engine/layer_decay.py: LayerDecayOptimWrapperConstructor gives each parameter its group, learning rate,
weight decay and layer id, worked out in the test from the parameter names (a tiny ViT; the digit-scenes segmentor)
or from timm's own ``no_weight_decay()`` (every family the recipes use, at a tiny size); backbone_layer_ids follows
the blocks of every family at full size and refuses a model it cannot order."""
import fnmatch
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

import cosub_seg  # noqa: F401
from cosub_seg.engine.layer_decay import LayerDecayOptimWrapperConstructor, backbone_layer_ids
from cosub_seg.models import TimmSegBackbone

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BASE_LR, WD, RATE = 1e-3, 0.05, 0.75
DEPTH = 3
TINY_VIT = dict(img_size=32, model_kwargs=dict(patch_size=8, embed_dim=32, depth=DEPTH, num_heads=2))


@pytest.fixture(autouse=True)
def mmseg_scope():
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


class Segmentor(nn.Module):
    """The parts of a segmentor the constructor looks at: a ``backbone`` holding the timm ``model``, and a head."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decode_head = nn.Conv2d(32, 4, 1)


class DDPLike(nn.Module):
    """What MMEngine's distributed wrappers look like to the constructor: the model under ``.module``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


def tiny_vit_segmentor():
    torch.manual_seed(0)
    return Segmentor(TimmSegBackbone('deit3_small_patch16_224', **TINY_VIT))


def vit_layer(name: str) -> int:
    """BEiT's numbering, from the name: the stem (patch embedding, position embedding, class token) is 0, block i
    is i + 1, everything outside the backbone is DEPTH + 1 (and keeps the base lr)."""
    if not name.startswith('backbone.model.'):
        return DEPTH + 1
    first, *rest = name[len('backbone.model.'):].split('.')
    if first in ('patch_embed', 'pos_embed', 'cls_token'):
        return 0
    assert first == 'blocks', name  # nothing else is left of a pruned DeiT III (its final norm and head are gone)
    return int(rest[0]) + 1


def vit_decays(name: str, param: torch.Tensor) -> bool:
    """No weight decay on 1-D parameters and on the position embedding and class token (DeiT III's rule)."""
    return not (param.ndim <= 1 or name in ('backbone.model.pos_embed', 'backbone.model.cls_token'))


def build(model, paramwise_cfg=None, **wrapper):
    cfg = dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD), **wrapper)
    return LayerDecayOptimWrapperConstructor(cfg, paramwise_cfg)(model)


def group_of(optimizer, model):
    """name -> its param group, and a check that no parameter is in two groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    found = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            assert names[id(p)] not in found, names[id(p)]
            found[names[id(p)]] = group
    return found


def test_every_parameter_gets_base_lr_times_rate_to_the_layers_above_it_and_its_layer_id():
    """lr = base_lr x rate ** (DEPTH + 1 - layer), weight decay 0 or WD, and the group's layer_id, for every
    parameter against the layer and decay worked from its name; one group per (layer, decay), and every parameter
    in exactly one. AdamW keeps the constructor's groups as given."""
    model = tiny_vit_segmentor()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD),
        constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=RATE)))
    assert type(wrapper.optimizer) is torch.optim.AdamW
    groups = group_of(wrapper.optimizer, model)
    params = dict(model.named_parameters())
    assert set(groups) == set(params)
    for name, param in params.items():
        layer = vit_layer(name)
        group = groups[name]
        assert group['lr'] == pytest.approx(BASE_LR * RATE ** (DEPTH + 1 - layer), rel=1e-12), name
        assert group['layer_id'] == layer, name
        assert group['weight_decay'] == (WD if vit_decays(name, param) else 0.0), name
    expected_keys = {(vit_layer(n), vit_decays(n, p)) for n, p in params.items()}
    assert len(wrapper.optimizer.param_groups) == len(expected_keys)
    # The stem's three kinds: a conv weight that decays, its bias, and the position embedding that do not.
    assert groups['backbone.model.patch_embed.proj.weight']['weight_decay'] == WD
    assert groups['backbone.model.pos_embed']['weight_decay'] == 0.0
    assert groups['backbone.model.patch_embed.proj.bias']['weight_decay'] == 0.0


def test_default_rate_is_1_every_group_at_base_lr_and_default_wrapper_is_optim_wrapper():
    """No layer_decay_rate: every group's lr is the base lr (rate 1); no wrapper type: a plain OptimWrapper. The
    layer ids are still each parameter's layer."""
    model = tiny_vit_segmentor()
    wrapper = build(model)
    assert type(wrapper) is OptimWrapper
    groups = group_of(wrapper.optimizer, model)
    assert set(groups) == {n for n, _ in model.named_parameters()}
    assert {g['lr'] for g in wrapper.optimizer.param_groups} == {BASE_LR}
    assert all(group['layer_id'] == vit_layer(name) for name, group in groups.items())


def test_a_ddp_wrapped_model_gets_the_groups_of_the_model_itself():
    """Wrapped (``.module``), the model's parameters get the same lr, decay and layer id as unwrapped."""
    model = tiny_vit_segmentor()
    plain = group_of(build(model, dict(layer_decay_rate=RATE)).optimizer, model)
    wrapped = group_of(build(DDPLike(model), dict(layer_decay_rate=RATE)).optimizer, model)
    assert set(wrapped) == set(plain) == {n for n, _ in model.named_parameters()}
    for name in plain:
        assert (wrapped[name]['lr'], wrapped[name]['weight_decay'], wrapped[name]['layer_id']) == (
            BASE_LR * RATE ** (DEPTH + 1 - vit_layer(name)),
            WD if vit_decays(name, dict(model.named_parameters())[name]) else 0.0, vit_layer(name))


def test_a_frozen_parameter_in_the_middle_is_left_out_and_the_rest_still_grouped():
    """requires_grad=False on a block-1 weight: it is in no group; every trainable parameter, those named after it
    (block 2, the head) included, is in exactly one group with its own layer's lr."""
    model = tiny_vit_segmentor()
    frozen = 'backbone.model.blocks.1.attn.qkv.weight'
    dict(model.named_parameters())[frozen].requires_grad_(False)
    groups = group_of(build(model, dict(layer_decay_rate=RATE)).optimizer, model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert frozen not in groups and set(groups) == trainable
    assert {'backbone.model.blocks.2.mlp.fc2.weight', 'decode_head.weight'} <= trainable
    for name in trainable:
        assert groups[name]['lr'] == pytest.approx(BASE_LR * RATE ** (DEPTH + 1 - vit_layer(name)), rel=1e-12)


def test_a_segmentor_without_a_timm_backbone_is_refused_with_what_it_has():
    class NoBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.decode_head = nn.Conv2d(3, 2, 1)

    with pytest.raises(TypeError, match=r'needs a segmentor whose backbone is a TimmSegBackbone \(backbone\.model\) '
                                        r'or a CosubClassifier \(backbone\), got a backbone of type Conv2d$'):
        build(Segmentor(nn.Conv2d(3, 32, 1)))
    with pytest.raises(TypeError, match=r'\(backbone\), got a backbone of type NoneType$'):
        build(NoBackbone())
    with pytest.raises(TypeError, match=r'got a backbone of type NoneType$'):
        build(DDPLike(NoBackbone()))


SWIN_DEPTHS = (1, 2, 1, 1)


def swin_layer(name: str) -> int:
    """Block by block over the stages: the stem (patch embedding) is 0, block b of stage s is 1 + (blocks of the
    stages before s) + b, a stage's downsampling shares the layer of the stage's first block; outside the backbone
    it is 1 + all the blocks."""
    if not name.startswith('backbone.model.'):
        return 1 + sum(SWIN_DEPTHS)
    parts = name[len('backbone.model.'):].split('.')
    if parts[0] == 'patch_embed':
        return 0
    stage = int(parts[1])
    first = 1 + sum(SWIN_DEPTHS[:stage])
    return first + int(parts[3]) if parts[2] == 'blocks' else first


def test_a_hierarchical_backbone_decays_block_by_block_not_stage_by_stage():
    """Swin with stages of 1, 2, 1, 1 blocks: the lr of every parameter is base_lr x rate ** (6 - layer) with its
    layer worked from its name (the two blocks of stage 1 get different lrs), and the group's layer_id is it."""
    model = Segmentor(TimmSegBackbone('swin_tiny_patch4_window7_224', img_size=56, model_kwargs=dict(
        embed_dim=16, depths=SWIN_DEPTHS, num_heads=(1, 1, 1, 1))))
    groups = group_of(build(model, dict(layer_decay_rate=RATE)).optimizer, model)
    assert set(groups) == {n for n, _ in model.named_parameters()}
    top = 1 + sum(SWIN_DEPTHS)
    for name, group in groups.items():
        assert group['layer_id'] == swin_layer(name), name
        assert group['lr'] == pytest.approx(BASE_LR * RATE ** (top - swin_layer(name)), rel=1e-12), name
    assert groups['backbone.model.layers.1.blocks.0.mlp.fc1.weight']['layer_id'] == 2
    assert groups['backbone.model.layers.1.blocks.1.mlp.fc1.weight']['layer_id'] == 3


# Every family the recipes use, at a tiny size (the same timm classes as the recipes' models).
FAMILIES = {
    'deit3': ('deit3_small_patch16_224', TINY_VIT),
    'xcit': ('xcit_nano_12_p16_224', dict(img_size=32, model_kwargs=dict(depth=2))),
    'swin': ('swin_tiny_patch4_window7_224',
             dict(img_size=56, model_kwargs=dict(embed_dim=16, depths=(1, 2, 1, 1), num_heads=(1, 1, 1, 1)))),
    'convnext': ('convnext_atto', {}),
    'regnety': ('regnety_002', {}),
    'pit': ('pit_ti_224', dict(img_size=64)),
}


def timm_no_decay_names(model: nn.Module, params) -> set:
    """The parameters that a timm module above them names in its ``no_weight_decay()``, relative to that module (a
    model names its position embedding, XCiT's attention its 'temperature'); ConvNeXt and RegNet name none. Entries
    are patterns, as timm's optimiser factory reads them (fnmatch): XCiT's model names 'pos_embed.*'."""
    named = set()
    for name in params:
        parts = name.split('.')
        for cut in range(len(parts)):
            owner = model.get_submodule('.'.join(parts[:cut]))
            if hasattr(owner, 'no_weight_decay') and any(fnmatch.fnmatchcase('.'.join(parts[cut:]), pattern)
                                                         for pattern in owner.no_weight_decay()):
                named.add(name)
    return named


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_no_weight_decay_on_1d_parameters_and_what_timm_names_in_every_family(family):
    """The parameters without weight decay are exactly the 1-D ones and those a timm module names in its own
    ``no_weight_decay()``: position embeddings, class tokens, Swin's relative position tables, XCiT's attention
    temperatures. In particular every position embedding and class token that is a parameter (DeiT III, PiT) is
    named there, so no rule of our own is needed for them; XCiT's 'pos_embed.*' covers its Fourier encoding's
    projection."""
    arch, kwargs = FAMILIES[family]
    model = Segmentor(TimmSegBackbone(arch, **kwargs))
    params = dict(model.named_parameters())
    named = timm_no_decay_names(model, params)
    tokens = {n for n in params if n.rsplit('.', 1)[-1] in ('pos_embed', 'cls_token')}
    assert tokens <= named
    assert bool(tokens) == (family in ('deit3', 'pit'))
    expected_named = {
        'deit3': {'backbone.model.pos_embed', 'backbone.model.cls_token'},
        'pit': {'backbone.model.pos_embed', 'backbone.model.cls_token'},
        'swin': {f'backbone.model.layers.{s}.blocks.{b}.attn.relative_position_bias_table'
                 for s, depth in enumerate((1, 2, 1, 1)) for b in range(depth)},
        'xcit': {f'backbone.model.blocks.{b}.attn.temperature' for b in range(2)}
        | {'backbone.model.pos_embed.token_projection.weight'},
        'convnext': set(), 'regnety': set(),
    }[family]
    assert {n for n in named if params[n].ndim > 1} == expected_named
    groups = group_of(build(model, dict(layer_decay_rate=RATE)).optimizer, model)
    assert set(groups) == set(params)
    no_decay = {n for n, g in groups.items() if g['weight_decay'] == 0.0}
    assert no_decay == {n for n, p in params.items() if p.ndim <= 1 or n in named}
    assert all(groups[n]['weight_decay'] == WD for n in params if n not in no_decay)


def test_layer_decay_follows_the_formula():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    rate, base_lr = 0.8, 1e-3
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05),
        constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=rate)))
    lr_of, wd_of = {}, {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            lr_of[id(p)], wd_of[id(p)] = group['lr'], group['weight_decay']
    params = dict(model.named_parameters())
    depth = 6
    # BEiT's numbering: stem (patch embedding, position embedding) 0, block i is i + 1, the heads depth + 1.
    num_layers = depth + 1
    expected = {
        'backbone.model.patch_embed.proj.weight': rate ** num_layers,
        'backbone.model.blocks.0.attn.qkv.weight': rate ** (num_layers - 1),
        'backbone.model.blocks.5.mlp.fc1.weight': rate ** 1,
        'decode_head.conv_seg.weight': 1.0,
        'neck.convs.0.conv.weight': 1.0,
    }
    for name, scale in expected.items():
        assert lr_of[id(params[name])] == pytest.approx(base_lr * scale), name
    assert wd_of[id(params['backbone.model.pos_embed'])] == 0.0
    assert wd_of[id(params['backbone.model.blocks.0.norm1.weight'])] == 0.0
    assert wd_of[id(params['backbone.model.blocks.0.attn.qkv.weight'])] == 0.05
    assert set(lr_of) == {id(p) for p in params.values()}


# Families and the blocks their layer ids must follow (backbone_layer_ids): stem 0, then every block in order, 1..depth.
LAYER_ID_FAMILIES = {
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


@pytest.mark.parametrize('arch', sorted(LAYER_ID_FAMILIES))
def test_layer_ids_of_every_family_follow_its_blocks(arch):
    """Worked from the module tree: the stem is layer 0, block n (counted over all stages) is layer n + 1, and a
    stage's downsampling / pooling layer shares the layer of the stage's first block."""
    from cosub_seg.models import TimmSegBackbone
    model = TimmSegBackbone(arch).model
    layer_of = backbone_layer_ids(model)
    assert set(layer_of) == {name for name, _ in model.named_parameters()}
    blocks = LAYER_ID_FAMILIES[arch](model)
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
