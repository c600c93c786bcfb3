"""cosub_seg/engine/optimizers.py: NoDecayOptimWrapperConstructor's weight-decay rule (none on norms, biases, position
embedding, class token and layer scale) and the bf16 AutocastOptimWrapper on the CPU."""

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import cosub_seg  # noqa: F401
from cosub_seg.models import CosubClassifier


@pytest.fixture(autouse=True)
def scope():
    """Builds in the cosub_seg scope, and puts the previous default scope back afterwards."""
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        yield


def tiny_vit():
    return CosubClassifier(arch='deit3_small_patch16_224', num_classes=10, drop_path_rate=0.1,
                           model_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2))


def test_no_decay_on_norms_biases_pos_embed_cls_token_and_layer_scale():
    model = tiny_vit()
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='Lamb', lr=1e-3, weight_decay=0.05), constructor='NoDecayOptimWrapperConstructor'))
    assert type(wrapper.optimizer).__name__ == 'Lamb'
    decay_of = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay_of[names[id(p)]] = group['weight_decay']
    assert set(decay_of) == set(names.values())
    no_decay = {n for n, wd in decay_of.items() if wd == 0}
    expected = {n for n, p in model.named_parameters() if p.ndim <= 1} | {'backbone.pos_embed', 'backbone.cls_token'}
    assert no_decay == expected
    assert decay_of['backbone.blocks.0.attn.qkv.weight'] == 0.05


def test_autocast_wrapper_runs_bf16_on_cpu():
    model = torch.nn.Linear(4, 2)
    wrapper = build_optim_wrapper(model, dict(type='AutocastOptimWrapper', dtype='bfloat16',
                                              optimizer=dict(type='SGD', lr=0.1)))
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
