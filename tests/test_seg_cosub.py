"""Cosub during fine-tuning: the per-pixel peer term and CosubEncoderDecoder."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import cosub_seg  # noqa: F401
from cosub_seg.cosub import cosub_pixel_peer_loss

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_pixel_peer_loss_by_hand_and_ignore_pixels_do_not_count():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 3, 2, 2, dtype=torch.float64)
    valid = torch.tensor([[[True, False], [True, True]]])
    expected = 0.0
    for i, j in ((0, 1), (1, 0)):
        total = 0.0
        for y, x in ((0, 0), (1, 0), (1, 1)):  # the valid pixels
            teacher = logits[j, 0, :, y, x].softmax(0)
            total += -(teacher * logits[i, 0, :, y, x].log_softmax(0)).sum().item()
        expected += total / 3
    expected /= 2
    assert cosub_pixel_peer_loss(logits, valid).item() == pytest.approx(expected, rel=1e-10)
    # Changing the logits of the ignored pixel changes nothing.
    changed = logits.clone()
    changed[:, 0, :, 0, 1] += 100
    assert cosub_pixel_peer_loss(changed, valid).item() == pytest.approx(expected, rel=1e-10)


def test_pixel_peer_loss_sends_no_gradient_into_the_teacher():
    torch.manual_seed(1)
    student = torch.randn(1, 4, 3, 3, requires_grad=True)
    teacher = torch.randn(1, 4, 3, 3, requires_grad=True)
    valid = torch.ones(1, 3, 3, dtype=torch.bool)
    # With k = 2 each copy is the other's teacher; what reaches `teacher` must be its own student gradient only.
    loss = cosub_pixel_peer_loss(torch.stack([student, teacher]), valid)
    g_student, g_teacher = torch.autograd.grad(loss, [student, teacher])
    n = 9
    # d/do_i of -sum(t * log_softmax(o_i)) = softmax(o_i) - t, with t fixed, averaged over pixels and the 2 copies.
    torch.testing.assert_close(g_student, (student.softmax(1) - teacher.softmax(1)).detach() / n / 2)
    torch.testing.assert_close(g_teacher, (teacher.softmax(1) - student.softmax(1)).detach() / n / 2)


def test_cosub_encoder_decoder_adds_the_peer_term_and_keeps_mmseg_losses():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.num_submodels = 2
    cfg.model.lam = 0.25
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    model.train()
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 64, 64)
    samples = []
    for _ in range(2):
        label = torch.randint(0, 11, (1, 64, 64))
        label[:, :8] = 255  # ignored rows
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64)))
        samples.append(sample)
    losses = model.loss(inputs, samples)
    assert set(losses) >= {'decode.loss_ce', 'decode.loss_peer', 'aux.loss_ce'}
    assert losses['decode.loss_peer'].item() > 0
    # loss_ce is (1 - lam) x mmseg's cross-entropy over both copies; undo the weight and compare with k = 1 bounds.
    raw_ce = losses['decode.loss_ce'].item() / 0.75
    assert 0.5 < raw_ce < 10
    model.num_submodels = 1
    plain = model.loss(inputs, samples)
    assert 'decode.loss_peer' not in plain
