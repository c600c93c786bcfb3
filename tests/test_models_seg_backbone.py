"""cosub_seg/models/seg_backbone.py: TimmSegBackbone's feature maps per family at other input sizes, the checkpoint
hand-off (the authors' DeiT III format, the position map resampled, a file that would run code refused), the check
of the pretrained checkpoint a config names, and an unknown backbone name."""
import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

import cosub_seg  # noqa: F401
from cosub_seg.models import TimmSegBackbone, plain_out_indices

from helpers import Hostile

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'


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


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / 'created_by_unpickling'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'payload': Hostile(str(marker))}, path)
    backbone = TimmSegBackbone('convnext_atto', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(RuntimeError, match='refused'):
        backbone.init_weights()
    assert not marker.exists()


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


def test_a_missing_pretrained_checkpoint_names_the_option_and_what_writes_it(tmp_path, monkeypatch):
    from cosub_seg.models.seg_backbone import TimmSegBackbone, check_pretrained_checkpoint
    monkeypatch.chdir(ROOT)
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'work_dirs/demo/pretrain/epoch_15.pth')
    with pytest.raises(FileNotFoundError) as info:
        check_pretrained_checkpoint(cfg.model)
    message = str(info.value)
    assert message.startswith(f"the backbone's pretrained checkpoint {tmp_path}/work_dirs/demo/pretrain/epoch_15.pth "
                              '(model.backbone.init_cfg.checkpoint) does not exist.')
    assert '--cfg-options model.backbone.init_cfg.checkpoint=PATH' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message
    # The command that writes it, from where the path points.
    cfg.model.backbone.init_cfg.checkpoint = 'work_dirs/demo/pretrain/epoch_15.pth'
    with pytest.raises(FileNotFoundError, match=r'`make demo` writes it'):
        check_pretrained_checkpoint(cfg.model)
    cfg.model.backbone.init_cfg.checkpoint = 'work_dirs/cosub_deit3-base_in1k/epoch_800.pth'
    with pytest.raises(FileNotFoundError,
                       match=re.escape('`python tools/pretrain.py configs/pretrain/cosub_deit3-base_in1k.py` writes')):
        check_pretrained_checkpoint(cfg.model)
    cfg.model.backbone.init_cfg = None
    check_pretrained_checkpoint(cfg.model)  # random initialisation: nothing to check
    # mmseg's own tools reach the same message when the backbone loads its weights.
    backbone = TimmSegBackbone('deit3_small_patch16_224', img_size=32, model_kwargs=dict(
        patch_size=8, embed_dim=32, depth=2, num_heads=2), init_cfg=dict(type='Pretrained', checkpoint='nowhere.pth'))
    with pytest.raises(FileNotFoundError, match=r'nowhere.pth \(model.backbone.init_cfg.checkpoint\) does not exist'):
        backbone.init_weights()


def test_an_unknown_backbone_name_is_named_with_close_matches():
    from cosub_seg.models import TimmSegBackbone
    with pytest.raises(ValueError, match=r"unknown timm model name 'convnext_tinny'.*Close matches: convnext_tiny"):
        TimmSegBackbone('convnext_tinny')
