"""models/checkpointing.py: activation checkpointing of every family's residual blocks, composed with row-skipping
stochastic depth and cosub's k = 2 copies: the same loss and gradients as without (float64, the same kept rows,
because the recomputation restores the random state), each block's layers really run twice in a training step and
once in evaluation, in the classifier and in the segmentation backbone; turning it off restores timm's classes."""
import pytest
import torch
import torch.nn as nn

from cosub_seg.cosub.loss import cosub_loss
from cosub_seg.models import CosubClassifier, TimmSegBackbone
from cosub_seg.models.checkpointing import residual_blocks, set_activation_checkpointing

from test_stochastic_depth import FAMILIES, bn_in_eval


def count_calls(model):
    """Counts the calls of the first Linear or Conv2d inside the first residual block (the block's own forward is
    re-run by checkpoint without going through its hooks; its layers do go through theirs)."""
    layer = next(m for m in residual_blocks(model)[0].modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    calls = []
    layer.register_forward_hook(lambda *args: calls.append(1))
    return calls


def cosub_step(family, grad_checkpointing):
    arch, kwargs, size = FAMILIES[family]
    torch.manual_seed(0)
    model = CosubClassifier(arch, num_classes=4, model_kwargs=kwargs, grad_checkpointing=grad_checkpointing,
                            stochastic_depth=dict(rate=0.5, schedule='constant', compute='skip')).double()
    calls = count_calls(model)
    model.train()
    bn_in_eval(model)  # BatchNorm would update its running statistics again in the recomputation
    x = torch.randn(3, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(11)
    logits = model.backbone(x.repeat(2, 1, 1, 1)).view(2, 3, -1)  # k = 2 copies, as CosubClassifier.loss runs them
    loss = cosub_loss(logits, torch.tensor([0, 1, 3])).total
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    model.eval()
    with torch.no_grad():
        model.backbone(x)
    return loss.detach(), grads, len(calls), model


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_checkpointing_gives_the_same_loss_and_gradients_in_every_family(family):
    loss, grads, calls, model = cosub_step(family, grad_checkpointing=False)
    loss_ck, grads_ck, calls_ck, model_ck = cosub_step(family, grad_checkpointing=True)
    assert calls == 2 and calls_ck == 3  # train + eval; checkpointed: train, recomputation, eval
    assert all(type(b).__name__.startswith('Checkpointed') for b in residual_blocks(model_ck))
    assert not any(type(b).__name__.startswith('Checkpointed') for b in residual_blocks(model))
    torch.testing.assert_close(loss_ck, loss, rtol=1e-12, atol=1e-14)
    assert grads_ck.keys() == grads.keys()
    for name, grad in grads.items():
        if grad is None:
            assert grads_ck[name] is None, name
            continue
        torch.testing.assert_close(grads_ck[name], grad, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize('arch, kwargs', [
    ('deit3_small_patch16_224', dict(patch_size=8, embed_dim=32, depth=4, num_heads=2)),
    ('convnext_atto', dict(depths=(1, 1, 2, 1))),
])
def test_segmentation_backbone_checkpointing_matches(arch, kwargs):
    outputs = {}
    for ck in (False, True):
        torch.manual_seed(0)
        backbone = TimmSegBackbone(arch, img_size=64 if 'deit' in arch else None, model_kwargs=kwargs,
                                   grad_checkpointing=ck, stochastic_depth=dict(rate=0.3, compute='skip')).double()
        backbone.train()
        x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        torch.manual_seed(5)
        feats = backbone(x)
        sum(f.square().mean() for f in feats).backward()
        outputs[ck] = ([f.detach() for f in feats], {n: p.grad for n, p in backbone.named_parameters()})
    for a, b in zip(outputs[False][0], outputs[True][0]):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    for name, grad in outputs[False][1].items():
        if grad is not None:
            torch.testing.assert_close(outputs[True][1][name], grad, rtol=1e-9, atol=1e-12, msg=name)


def test_turning_checkpointing_off_restores_the_block_classes_and_keeps_the_state_dict():
    arch, kwargs, _ = FAMILIES['swin']
    model = CosubClassifier(arch, num_classes=4, model_kwargs=kwargs, stochastic_depth=dict(rate=0.2))
    before = [type(b) for b in residual_blocks(model)]
    keys = list(model.state_dict())
    assert set_activation_checkpointing(model) == len(before) == 5
    assert set_activation_checkpointing(model) == 5  # twice: still one level of checkpointing
    assert [type(b).__mro__[1] for b in residual_blocks(model)] == before
    assert list(model.state_dict()) == keys
    set_activation_checkpointing(model, enable=False)
    assert [type(b) for b in residual_blocks(model)] == before
