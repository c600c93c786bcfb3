"""TimmSegBackbone: feature maps per family, checkpoint hand-off, layer-wise lr decay."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

import cosub_seg  # noqa: F401
from cosub_seg.models import TimmSegBackbone, plain_out_indices

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Per seg config: expected (channels, stride) of every returned map, worked out from each architecture's paper.
FAMILIES = {
    'upernet_cosub-deit3-small_ade20k-512x512.py': [(384, 16)] * 4,
    'upernet_cosub-xcit-s12_ade20k-512x512.py': [(384, 16)] * 4,
    'upernet_cosub-swin-base_ade20k-512x512.py': [(128, 4), (256, 8), (512, 16), (1024, 32)],
    'upernet_cosub-convnext-base_ade20k-512x512.py': [(128, 4), (256, 8), (512, 16), (1024, 32)],
    'upernet_cosub-regnety-16gf_ade20k-512x512.py': [(224, 4), (448, 8), (1232, 16), (3024, 32)],
}
H, W = 160, 224  # not the pretraining size, and not square


@pytest.fixture(autouse=True)
def mmseg_scope():
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


@pytest.mark.parametrize('config', sorted(FAMILIES))
def test_backbone_from_config_returns_nchw_maps_at_other_sizes(config):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg', config))
    backbone = MODELS.build(cfg.model.backbone).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, H, W))
    got = [(f.shape[1], H // f.shape[2], W // f.shape[3]) for f in feats]
    assert got == [(c, s, s) for c, s in FAMILIES[config]]
    # The heads of the config are wired to these channels.
    in_channels = cfg.model.get('neck', cfg.model.decode_head).in_channels
    assert list(in_channels) == [c for c, _ in FAMILIES[config]]


def test_pit_gives_three_stages_and_resamples_its_position_map():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/upernet_cosub-pit-b_ade20k-512x512.py'))
    backbone = MODELS.build(cfg.model.backbone).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, H, W))
    # PiT-B: 14x14 patches with stride 7 ((n - 14) // 7 + 1 tokens a side), then two 2x poolings (ceil).
    h0, w0 = (H - 14) // 7 + 1, (W - 14) // 7 + 1
    assert [tuple(f.shape[1:]) for f in feats] == [
        (256, h0, w0), (512, (h0 + 1) // 2, (w0 + 1) // 2), (1024, ((h0 + 1) // 2 + 1) // 2, ((w0 + 1) // 2 + 1) // 2)]
    assert list(cfg.model.decode_head.in_channels) == [256, 512, 1024]


def test_plain_out_indices_spread_like_beit():
    assert plain_out_indices(12) == [3, 5, 7, 11]
    assert plain_out_indices(24) == [7, 11, 15, 23]


def test_deit3_release_key_names_and_wrapper_are_imported(tmp_path):
    """A checkpoint in the authors' format: {'model': ...} with LayerScale as gamma_1 / gamma_2 and a 1000-way head."""
    import timm
    source = timm.create_model('deit3_small_patch16_224', num_classes=1000, img_size=64, patch_size=16,
                               embed_dim=64, depth=2, num_heads=2)
    authors = {}
    for key, value in source.state_dict().items():
        key = key.replace('ls1.gamma', 'gamma_1').replace('ls2.gamma', 'gamma_2')
        authors[key] = value.clone()
    assert 'blocks.0.gamma_1' in authors
    path = tmp_path / 'deit_3_tiny.pth'
    torch.save({'model': authors}, path)
    backbone = TimmSegBackbone('deit3_small_patch16_224', img_size=64,
                               model_kwargs=dict(patch_size=16, embed_dim=64, depth=2, num_heads=2),
                               init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    backbone.init_weights()
    own = backbone.model.state_dict()
    torch.testing.assert_close(own['blocks.1.ls2.gamma'], authors['blocks.1.gamma_2'])
    torch.testing.assert_close(own['blocks.0.attn.qkv.weight'], authors['blocks.0.attn.qkv.weight'])
    assert 'head.weight' not in own


class _Hostile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / 'created_by_unpickling'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'payload': _Hostile(str(marker))}, path)
    backbone = TimmSegBackbone('convnext_atto', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(RuntimeError, match='refused'):
        backbone.init_weights()
    assert not marker.exists()


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


def test_pos_embed_resize_matches_direct_bicubic_interpolation(tmp_path):
    import timm
    source = timm.create_model('deit3_small_patch16_224', num_classes=10, img_size=32, patch_size=8,
                               embed_dim=32, depth=2, num_heads=2)
    path = tmp_path / 'plain_timm.pth'
    torch.save(source.state_dict(), path)
    backbone = TimmSegBackbone('deit3_small_patch16_224', img_size=64,
                               model_kwargs=dict(patch_size=8, embed_dim=32, depth=2, num_heads=2),
                               init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    backbone.init_weights()
    old = source.pos_embed.detach()  # (1, 16, 32): a 4x4 grid, no class token (DeiT III)
    grid = old.reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    # timm resamples with antialias=True, i.e. PIL's bicubic kernel (a = -0.5), also when upsampling.
    direct = F.interpolate(grid, size=(8, 8), mode='bicubic', align_corners=False, antialias=True)
    torch.testing.assert_close(backbone.model.pos_embed.detach(), direct.permute(0, 2, 3, 1).reshape(1, 64, 32))
