"""cosub_seg/models/segmentor.py: CosubEncoderDecoder's loss with k copies (the weighted label term plus the per-pixel
peer term between the copies of the same image), worked out from the logits its heads produced; k = 1 is mmseg's
EncoderDecoder. (The per-pixel peer term itself is in test_cosub_loss.py.)"""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import cosub_seg  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _tiny_segmentor(**overrides):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.update(overrides)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def _scene_samples(batch=2, size=64):
    """Labels over the 11 classes with ignored (255) rows, a different number of them in each image."""
    samples = []
    for b in range(batch):
        label = torch.randint(0, 11, (1, size, size))
        label[:, :8 + 8 * b] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(size, size), pad_shape=(size, size), ori_shape=(size, size)))
        samples.append(sample)
    return samples


def _capture(monkeypatch, model):
    """Keeps what the backbone gets and what each head's forward returns (the segmentor calls head.forward directly,
    so a forward hook would not fire)."""
    seen = dict(backbone_in=[], decode=[], aux=[])
    model.backbone.register_forward_hook(lambda mod, inp, out: seen['backbone_in'].append(inp[0].detach()))
    for key, head in (('decode', model.decode_head), ('aux', model.auxiliary_head)):
        def spy(inputs, forward=head.forward, key=key):
            out = forward(inputs)
            seen[key].append(out.detach())
            return out
        monkeypatch.setattr(head, 'forward', spy)
    return seen


def _mmseg_cross_entropy(logits, labels):
    """mmseg's CrossEntropyLoss (avg_non_ignore=False, its default): per-pixel cross-entropy of the logits resized
    bilinearly to the labels, ignore (255) pixels counting 0, averaged over all pixels."""
    resized = F.interpolate(logits, size=labels.shape[-2:], mode='bilinear', align_corners=False)
    return F.cross_entropy(resized, labels, ignore_index=255, reduction='none').mean()


@pytest.mark.parametrize('lam', [0.25, 0.7])
def test_cosub_encoder_decoder_loss_is_weighted_label_plus_peer_of_the_same_image(monkeypatch, lam):
    """CosubEncoderDecoder.loss (k = 2) against the loss worked here from the logits its heads produced:
    decode.loss_ce = (1 - lam) * mmseg's cross-entropy over the 2 copies (_mmseg_cross_entropy), decode.loss_peer =
    lam * the mean over copies c of the soft cross-entropy of copy c of image b towards the softmax of the OTHER copy
    of the SAME image b, over the valid pixels, aux.loss_ce = 0.4 * the auxiliary head's cross-entropy (no lam)."""
    torch.manual_seed(0)
    model = _tiny_segmentor(num_submodels=2, lam=lam)
    model.train()
    seen = _capture(monkeypatch, model)
    batch, k = 2, 2
    inputs = torch.randn(batch, 3, 64, 64)
    samples = _scene_samples(batch)
    labels = torch.stack([s.gt_sem_seg.data[0] for s in samples])  # (B, H, W)
    losses = model.loss(inputs, samples)
    # One forward of a k·B batch: row c·B + b is copy c of image b.
    [backbone_in] = seen['backbone_in']
    for c in range(k):
        torch.testing.assert_close(backbone_in[c * batch:(c + 1) * batch], inputs, rtol=0, atol=0)
    [decode], [aux] = seen['decode'], seen['aux']
    assert decode.shape[:2] == (k * batch, 11)
    row_labels = torch.cat([labels] * k)
    label_term = _mmseg_cross_entropy(decode, row_labels)
    resized = F.interpolate(decode, size=(64, 64), mode='bilinear', align_corners=False).view(k, batch, 11, 64, 64)
    valid = labels != 255
    peer_sum = 0.0
    for c in range(k):
        for b in range(batch):
            teacher = resized[1 - c, b].softmax(0)  # the other copy of the same image
            per_pixel = -(teacher * resized[c, b].log_softmax(0)).sum(0)
            peer_sum = peer_sum + per_pixel[valid[b]].sum()
    peer_term = peer_sum / valid.sum() / k
    torch.testing.assert_close(losses['decode.loss_ce'], (1 - lam) * label_term, rtol=1e-5, atol=0)
    torch.testing.assert_close(losses['decode.loss_peer'], lam * peer_term, rtol=1e-5, atol=0)
    torch.testing.assert_close(losses['aux.loss_ce'], 0.4 * _mmseg_cross_entropy(aux, row_labels), rtol=1e-5, atol=0)
    total = sum(v for name, v in losses.items() if name.startswith('decode.') and 'loss' in name)
    torch.testing.assert_close(total, (1 - lam) * label_term + lam * peer_term, rtol=1e-5, atol=0)
    # The copies ran different submodels (stochastic depth), and pairing different images would give another peer
    # term: the check above can tell them apart.
    assert (resized[0] - resized[1]).abs().max() > 1e-3
    crossed = sum(-(resized[1 - c, 1 - b].softmax(0) * resized[c, b].log_softmax(0)).sum(0)[valid[b]].sum()
                  for c in range(k) for b in range(batch)) / valid.sum() / k
    assert abs(crossed.item() - peer_term.item()) > 1e-3 * peer_term.item()


def test_one_submodel_is_mmseg_encoder_decoder(monkeypatch):
    """k = 1: decode.loss_ce is mmseg's cross-entropy of the one batch's logits, unweighted, and there is no peer
    term."""
    torch.manual_seed(1)
    model = _tiny_segmentor(num_submodels=1, lam=0.25)
    model.train()
    seen = _capture(monkeypatch, model)
    inputs = torch.randn(2, 3, 64, 64)
    samples = _scene_samples(2)
    labels = torch.stack([s.gt_sem_seg.data[0] for s in samples])
    losses = model.loss(inputs, samples)
    assert 'decode.loss_peer' not in losses
    [decode], [aux] = seen['decode'], seen['aux']
    assert decode.shape[0] == 2
    torch.testing.assert_close(losses['decode.loss_ce'], _mmseg_cross_entropy(decode, labels), rtol=1e-5, atol=0)
    torch.testing.assert_close(losses['aux.loss_ce'], 0.4 * _mmseg_cross_entropy(aux, labels), rtol=1e-5, atol=0)
