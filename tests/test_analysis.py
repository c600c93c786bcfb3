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
    # The backbone is the tiny ViT at 64x64: 8x8 patches -> 64 tokens (no class token: it pools the patch tokens).
    D, N = 128, 64
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


# ------------------------------------------------------------------------------------ training memory (fake tensors)

PRETRAIN_CONFIG = osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py')


def test_memory_estimate_counts_weights_gradients_adamw_state_and_the_ema_exactly(monkeypatch):
    """The demo recipe with an EMA hook: parameters 4 bytes each, AdamW's two fp32 moments per parameter plus its
    fp32 step count per tensor, the EMA a second copy of the parameters. The EMA copy is not a deep copy of fake
    tensors, which copies torch's StorageWeakRef objects (cosub_seg/runtime/patches.py, item 5): here any copy of
    one fails the test."""
    from torch.multiprocessing.reductions import StorageWeakRef

    from cosub_seg.analysis import estimate_training_memory

    def refuse(*args):
        raise AssertionError('a StorageWeakRef was copied: a fake tensor was deep-copied')
    monkeypatch.setattr(StorageWeakRef, '__copy__', refuse)
    monkeypatch.setattr(StorageWeakRef, '__deepcopy__', refuse)
    memory = estimate_training_memory(PRETRAIN_CONFIG, 8, cfg_options={
        'custom_hooks': [dict(type='StepEMAHook', momentum=1e-4)]})
    model, _ = build_model_of(PRETRAIN_CONFIG)
    numel = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    kinds = memory['peak_by_kind']
    assert memory['params'] == numel and memory['optimizer'] == 'AdamW'
    assert kinds['param'] == 4 * numel
    assert kinds['opt'] == 8 * numel + 4 * tensors
    assert kinds['ema'] == 4 * numel
    assert memory['peak_bytes'] == sum(kinds.values())


def build_model_of(config, **options):
    from cosub_seg.analysis import build_model
    return build_model(config, options or None)


def _saved_for_backward_bytes(config, options, batch):
    """What a real forward pass of the model keeps for its backward pass: the bytes of the distinct storages autograd
    saves (torch.autograd.graph.saved_tensors_hooks), parameters and the input left out."""
    from mmengine.structures import BaseDataElement
    model, cfg = build_model_of(config, **options)
    model.train()
    x = torch.randn(batch, 3, 32, 32)
    samples = [BaseDataElement(gt_score=torch.zeros(cfg.model.num_classes)) for _ in range(batch)]
    left_out = {p.untyped_storage().data_ptr() for p in model.parameters()} | {x.untyped_storage().data_ptr()}
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x, samples, mode='loss')
    return sum(n for ptr, n in saved.items() if ptr not in left_out)


def test_memory_estimate_of_activations_matches_what_autograd_saves_and_checkpointing_cuts_it():
    """Without stochastic depth (every row kept) and one submodel, the activations the estimate finds at its peak
    are what autograd saves in a real forward pass (within 5 %); checkpointing every block keeps < 0.3 of them."""
    from cosub_seg.analysis import estimate_training_memory
    options = {'model.stochastic_depth.rate': 0.0, 'model.num_submodels': 1}
    plain = estimate_training_memory(PRETRAIN_CONFIG, 32, cfg_options=options)
    saved = _saved_for_backward_bytes(PRETRAIN_CONFIG, options, 32)
    assert plain['peak_by_kind']['act'] == pytest.approx(saved, rel=0.05)
    checkpointed = estimate_training_memory(PRETRAIN_CONFIG, 32, cfg_options=dict(
        options, **{'model.grad_checkpointing': True}))
    assert checkpointed['grad_checkpointing'] and not plain['grad_checkpointing']
    assert checkpointed['peak_by_kind']['act'] < 0.3 * plain['peak_by_kind']['act']


def test_memory_option_of_the_tool_prints_the_table_and_writes_the_estimate(tmp_path, capsys):
    from cosub_seg.cli.analyze_model import main
    out = str(tmp_path / 'a.json')
    result = main([PRETRAIN_CONFIG, '--memory', '--gpu-memory', '0.1', '--out', out])
    printed = capsys.readouterr().out
    memory = result['memory']
    assert memory['batch_size'] == 64  # the config's train batch per GPU
    with open(out) as f:
        assert json.load(f)['memory'] == memory
    total = memory['peak_bytes'] / 2**30
    assert 'peak training memory, one process, batch 64 at 32x32, AdamW, activation checkpointing off' in printed
    assert f'{total:>9.2f} GiB: does not fit a 0.1 GiB card with 10 % left free' in printed
    kinds = memory['peak_by_kind']
    assert f'{"optimiser state":<44}{kinds["opt"] / 2**30:>9.2f} GiB' in printed
