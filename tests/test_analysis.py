"""cosub_seg/analysis.py (and its tool, cli/analyze_model.py): FLOPs against a hand count and a published number,
parameters; the throughput command end to end (slow)."""
import json
import os.path as osp

import pytest
import timm
import torch

import cosub_seg  # noqa: F401
from cosub_seg.analysis import analyze, count_flops, count_params

from helpers import run_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py')


def test_vit_flops_by_hand():
    """A 2-block ViT, width D = 64, 8x8 patches of a 32x32 image: P = 16 patches, N = 17 tokens with the class
    token, 10 classes; one multiply-add = 1 FLOP."""
    D, P, N, depth, classes = 64, 16, 17, 2, 10
    model = timm.create_model('deit3_small_patch16_224', img_size=32, patch_size=8, embed_dim=D, depth=depth,
                              num_heads=2, num_classes=classes).eval()
    got = count_flops(model, (torch.randn(1, 3, 32, 32),))['by_operator']
    patch_embed = P * D * (3 * 8 * 8)
    per_block_linear = N * D * 3 * D + N * D * D + 2 * N * D * 4 * D  # qkv, proj, fc1, fc2
    head = D * classes  # on the class token only
    attention = depth * 2 * N * N * D  # q @ k^T and attn @ v, summed over heads
    layer_norm = (2 * depth + 1) * N * D * 5  # fvcore: 5 per element of an affine norm
    assert got == dict(conv=patch_embed, linear=depth * per_block_linear + head,
                       scaled_dot_product_attention=attention, layer_norm=layer_norm)


def test_deit3_small_matches_the_published_count():
    """DeiT-S / DeiT III ViT-S: 22M parameters and 4.6 GFLOPs at 224 (Touvron et al. 2021, 2022)."""
    model = timm.create_model('deit3_small_patch16_224').eval()
    result = count_flops(model, (torch.randn(1, 3, 224, 224),))
    assert result['flops'] / 1e9 == pytest.approx(4.6, abs=0.05)
    assert count_params(model) / 1e6 == pytest.approx(22.06, abs=0.01)


def test_segmentor_parts_add_up():
    result = analyze(SEG_CONFIG, (64, 64))
    parts = result['parts']
    assert set(parts) == {'backbone', 'segmentor', 'auxiliary_head (training only)'}
    assert parts['segmentor']['params'] > parts['backbone']['params']
    assert parts['segmentor']['flops'] > parts['backbone']['flops'] > 0
    # The backbone is the tiny ViT at 64x64: 8x8 patches -> 64 tokens plus the class token.
    D, N = 128, 65
    assert parts['backbone']['by_operator']['scaled_dot_product_attention'] == 6 * 2 * N * N * D


@pytest.mark.slow
def test_analyze_command_with_throughput(tmp_path, python):
    out = tmp_path / 'analysis.json'
    proc = run_tool([python, 'tools/analyze_model.py', SEG_CONFIG, '--shape', '64', '--throughput',
                     '--batch-size', '2', '--warmup', '1', '--iters', '2', '--out', str(out)])
    result = json.loads(out.read_text())
    assert result['input_size'] == [64, 64]
    assert set(result['throughput']['images_per_s']) == {'backbone', 'segmentor'}
    assert all(v > 0 for v in result['throughput']['images_per_s'].values())
    assert 'segmentor' in proc.stdout and 'images/s' in proc.stdout
