"""models/checkpointing.py: activation checkpointing of every family's residual blocks, composed with row-skipping
stochastic depth and cosub's k = 2 copies: the same loss and gradients as without (float64, the same kept rows,
because the recomputation restores the random state), each block's layers really run twice in a training step and
once in evaluation, in the classifier and in the segmentation backbone, with BatchNorm statistics updated once
(RegNet); the same for the ConvModules of UperNet's heads (model.head_checkpointing); turning it off restores the
classes."""
import pytest
import torch
import torch.nn as nn

from cosub_seg.cosub.loss import cosub_loss
from cosub_seg.models import CosubClassifier, TimmSegBackbone
from cosub_seg.models.checkpointing import (head_units, residual_blocks, set_activation_checkpointing,
                                            set_head_checkpointing)

from test_models_segmentor import _scene_samples, _tiny_segmentor
from test_stochastic_depth import FAMILIES


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
    model.train()  # RegNet's BatchNorm in training mode: the recomputation must not update its statistics again
    x = torch.randn(3, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(11)
    logits = model.backbone(x.repeat(2, 1, 1, 1)).view(2, 3, -1)  # k = 2 copies, as CosubClassifier.loss runs them
    loss = cosub_loss(logits, torch.tensor([0, 1, 3])).total
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    grads.update({name: b.clone() for name, b in model.named_buffers() if 'running' in name})
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


def segmentor_step(head_checkpointing):
    """A training step of the demo's UperNet (tiny DeiT III, UPerHead + FCN head with BatchNorm, k = 2, float64),
    then one evaluation forward of the decode head; its losses, gradients, BatchNorm buffers and the calls of the
    decode head's last ConvModule's convolution."""
    torch.manual_seed(0)
    model = _tiny_segmentor(head_checkpointing=head_checkpointing, num_submodels=2).double()
    units = head_units(model.decode_head) + head_units(model.auxiliary_head)
    calls = []
    head_units(model.decode_head)[-1].conv.register_forward_hook(lambda *args: calls.append(1))
    model.train()
    inputs = torch.randn(2, 3, 96, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    samples = _scene_samples(batch=2, size=96)
    torch.manual_seed(3)
    losses = model.loss(inputs, samples)
    sum(value for name, value in losses.items() if 'loss' in name).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers() if 'running' in name or 'num_batches' in name}
    model.eval()
    with torch.no_grad():
        model.decode_head.forward(model.extract_feat(inputs))
    return losses, grads, buffers, len(calls), units


def test_head_checkpointing_gives_the_same_losses_gradients_and_running_statistics():
    """model.head_checkpointing=True (CosubEncoderDecoder): each ConvModule of both heads recomputed in the backward
    pass, the step's losses and gradients unchanged, and the BatchNorm running statistics those of one update (the
    recomputation's second update is undone)."""
    losses, grads, buffers, calls, units = segmentor_step(head_checkpointing=False)
    losses_ck, grads_ck, buffers_ck, calls_ck, units_ck = segmentor_step(head_checkpointing=True)
    # UPerHead with pool scales 1/2/3/6 and 4 inputs: 4 PPM + 1 bottleneck + 3 lateral + 3 FPN + 1 fuse; FCN: 1
    assert len(units) == len(units_ck) == 13
    assert all(type(u).__name__ == 'CheckpointedConvModule' for u in units_ck)
    assert not any(type(u).__name__.startswith('Checkpointed') for u in units)
    assert calls == 2 and calls_ck == 3  # train + eval; checkpointed: train, recomputation, eval
    assert losses_ck.keys() == losses.keys() and 'decode.loss_peer' in losses
    for name, value in losses.items():
        torch.testing.assert_close(losses_ck[name], value, rtol=1e-12, atol=1e-14, msg=name)
    for name, grad in grads.items():
        if grad is None:
            assert grads_ck[name] is None, name
            continue
        torch.testing.assert_close(grads_ck[name], grad, rtol=1e-9, atol=1e-12, msg=name)
    assert buffers and buffers_ck.keys() == buffers.keys()
    for name, value in buffers.items():
        torch.testing.assert_close(buffers_ck[name], value, rtol=1e-12, atol=1e-14, msg=name)
    assert all(int(v) == 1 for name, v in buffers.items() if 'num_batches' in name)  # one update per step


def test_head_checkpointing_can_be_turned_off_and_keeps_the_state_dict():
    model = _tiny_segmentor(head_checkpointing=True)
    keys = list(model.state_dict())
    assert set_head_checkpointing(model.decode_head, enable=False) == 12
    assert not any(type(u).__name__.startswith('Checkpointed') for u in head_units(model.decode_head))
    assert list(model.state_dict()) == keys
