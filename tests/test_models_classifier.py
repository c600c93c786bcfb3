"""cosub_seg/models/classifier.py and models/data_preprocessor.py: CosubClassifier's independent drop masks per copy,
the loss it optimises, prediction; ClsDataPreprocessor's normalisation, mixup, cutmix and label smoothing."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement

from cosub_seg.cosub import cosub_loss
from cosub_seg.models import ClsDataPreprocessor, CosubClassifier


def tiny_vit(**kwargs):
    args = dict(arch='deit3_small_patch16_224', num_classes=10, drop_path_rate=0.5,
                model_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, init_values=1.0))
    args.update(kwargs)
    return CosubClassifier(**args)


def samples(labels):
    return [BaseDataElement(gt_label=torch.tensor([label])) for label in labels]


def test_copies_of_an_image_get_different_drop_masks_in_train_and_none_in_eval():
    torch.manual_seed(0)
    model = tiny_vit()
    x = torch.randn(1, 3, 32, 32).repeat(4, 1, 1, 1)  # four copies of one image
    model.train()
    out = model(x, mode='tensor')
    differing = sum(not torch.allclose(out[0], out[i]) for i in range(1, 4))
    assert differing >= 2, 'copies in one batch should run different submodels'
    model.eval()
    out = model(x, mode='tensor')
    for i in range(1, 4):
        torch.testing.assert_close(out[0], out[i])


def test_loss_runs_the_same_batch_k_times_and_applies_cosub_loss():
    torch.manual_seed(0)
    model = tiny_vit(num_submodels=3, lam=0.3)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    labels = [3, 7]
    seen = []
    model.backbone.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].detach(), out.detach())))
    torch.manual_seed(5)
    losses = model(x, samples(labels), mode='loss')
    batch_in, logits = seen[0]
    assert batch_in.shape[0] == 6
    for i in range(3):
        torch.testing.assert_close(batch_in[2 * i:2 * i + 2], x)
    expected = cosub_loss(logits.view(3, 2, 10), torch.tensor(labels), lam=0.3)
    torch.testing.assert_close(losses['loss_label'], expected.label)
    torch.testing.assert_close(losses['loss_peer'], expected.peer)


def test_k1_is_plain_training_without_peer():
    """k = 1: loss_label is plain BCE with logits of the one copy against the one-hot labels (torch's
    F.binary_cross_entropy_with_logits on the logits captured from the backbone), and the peer term is 0."""
    torch.manual_seed(0)
    model = tiny_vit(num_submodels=1)
    seen = []
    model.backbone.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    losses = model(torch.randn(2, 3, 32, 32), samples([1, 2]), mode='loss')
    assert losses['loss_peer'].item() == 0.0
    [logits] = seen
    assert logits.shape == (2, 10)  # the batch ran once
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(torch.tensor([1, 2]), 10).float())
    torch.testing.assert_close(losses['loss_label'], expected)


@pytest.mark.parametrize('loss_type', ['bce', 'ce'])
def test_soft_gt_score_targets_are_what_the_loss_learns(loss_type):
    """With mixup/cutmix the preprocessor puts soft targets in ``gt_score``; the loss must use them, not
    ``gt_label``. Checked against the cosub formula written out here on the logits captured from the backbone:
    (1 - lam) * mean_i L(o_i, y) + lam * mean_i L(o_i, sg(p_j)), L = BCE with logits (p = sigmoid) or soft CE
    (p = softmax)."""
    torch.manual_seed(0)
    lam = 0.3
    model = tiny_vit(num_submodels=2, lam=lam, loss_type=loss_type)
    with torch.no_grad():
        model.backbone.head.weight.mul_(30)  # logits of order 1 (timm's head starts near 0): targets weigh in
    model.train()
    seen = []
    model.backbone.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    scores = torch.zeros(2, 10)
    scores[0, 3], scores[0, 5] = 0.6, 0.4
    scores[1, 7], scores[1, 1] = 0.75, 0.25
    data_samples = samples([3, 7])  # the labels of the larger share: the soft targets differ from them
    for sample, score in zip(data_samples, scores):
        sample.gt_score = score
    losses = model(torch.randn(2, 3, 32, 32), data_samples, mode='loss')
    o = seen[0].view(2, 2, 10)
    if loss_type == 'bce':
        criterion, probs = F.binary_cross_entropy_with_logits, o.sigmoid()
    else:
        def criterion(logits, target):
            return -(target * logits.log_softmax(-1)).sum(-1).mean()
        probs = o.softmax(-1)
    label = (1 - lam) * (criterion(o[0], scores) + criterion(o[1], scores)) / 2
    peer = lam * (criterion(o[0], probs[1]) + criterion(o[1], probs[0])) / 2
    torch.testing.assert_close(losses['loss_label'], label, rtol=1e-6, atol=0)
    torch.testing.assert_close(losses['loss_peer'], peer, rtol=1e-6, atol=0)
    hard = cosub_loss(o, torch.tensor([3, 7]), lam=lam, loss_type=loss_type)
    assert abs(hard.label.item() - label.item()) > 1e-3  # far outside the tolerance: the hard labels would not pass


def test_cosub_without_stochastic_depth_is_refused():
    with pytest.raises(ValueError, match=r'stochastic_depth.rate > 0'):
        tiny_vit(drop_path_rate=0.0)


def test_unknown_timm_name_suggests_close_matches():
    with pytest.raises(ValueError, match='deit3_small_patch16_224'):
        tiny_vit(arch='deit3_smal_patch16_224')


def test_predict_returns_probabilities_and_labels():
    model = tiny_vit().eval()
    out = model(torch.randn(3, 3, 32, 32), samples([0, 1, 2]), mode='predict')
    assert len(out) == 3
    for sample in out:
        assert sample.pred_score.shape == (10,)
        assert sample.pred_score.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert sample.pred_label.item() == int(sample.pred_score.argmax())


def test_preprocessor_normalises_and_mixes_in_training_only():
    pre = ClsDataPreprocessor(num_classes=4, mean=(10, 20, 30), std=(2, 4, 5), bgr_to_rgb=False,
                              mixup=dict(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0))
    imgs = [torch.full((3, 2, 2), 50, dtype=torch.uint8), torch.full((3, 2, 2), 70, dtype=torch.uint8)]
    data = dict(inputs=imgs, data_samples=samples([0, 3]))
    out = pre(data, training=False)
    torch.testing.assert_close(out['inputs'][0, :, 0, 0], torch.tensor([20.0, 7.5, 4.0]))
    assert 'gt_score' not in out['data_samples'][0]
    torch.manual_seed(0)
    out = pre(dict(inputs=imgs, data_samples=samples([0, 3])), training=True)
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    # timm's batch mixup mixes image i with image B-1-i, and the targets with the same weight.
    lam = scores[0, 0].item()
    torch.testing.assert_close(scores, torch.tensor([[lam, 0, 0, 1 - lam], [1 - lam, 0, 0, lam]]))
    expected_img0 = lam * torch.tensor([20.0, 7.5, 4.0]) + (1 - lam) * torch.tensor([30.0, 12.5, 8.0])
    torch.testing.assert_close(out['inputs'][0, :, 0, 0], expected_img0)


def test_preprocessor_label_smoothing_without_mixup():
    pre = ClsDataPreprocessor(num_classes=4, label_smoothing=0.2)
    out = pre(dict(inputs=[torch.zeros(3, 2, 2, dtype=torch.uint8)], data_samples=samples([2])), training=True)
    torch.testing.assert_close(out['data_samples'][0].gt_score, torch.tensor([0.05, 0.05, 0.85, 0.05]))


def test_preprocessor_cutmix_pastes_one_box_and_weights_targets_by_its_area():
    """Cutmix (timm's Mixup, batch mode) in the preprocessor, against what the test reads off the mixed images: the
    pixels that differ from image i form one axis-aligned box, the same for every image, that holds image B-1-i's
    (normalised) pixels, and the targets weigh the two labels by the box's share of the image worked here:
    gt_score[i] = (1 - a) onehot(y_i) + a onehot(y_{B-1-i}), a = box area / (H W)."""
    import numpy as np
    size, batch = 16, 4
    pre = ClsDataPreprocessor(num_classes=6, mean=(100, 100, 100), std=(50, 50, 50), bgr_to_rgb=False,
                              mixup=dict(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0))
    gen = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8) for _ in range(batch)]
    normalised = (torch.stack(imgs).float() - 100) / 50
    labels = [0, 2, 3, 5]
    for seed in range(20):
        np.random.seed(seed)  # timm draws the box from numpy's global generator
        out = pre(dict(inputs=list(imgs), data_samples=samples(labels)), training=True)
        box = (out['inputs'][0] != normalised[0]).any(dim=0)
        if 0 < int(box.sum()) < size * size:
            break
    else:
        raise AssertionError('no seed in 0..19 gave a box that covers part of the image')
    rows, cols = box.any(dim=1).nonzero().view(-1), box.any(dim=0).nonzero().view(-1)
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    rectangle = torch.zeros_like(box)
    rectangle[top:bottom, left:right] = True
    assert torch.equal(box, rectangle)  # one box, filled
    for i in range(batch):
        expected = normalised[i].clone()
        expected[:, top:bottom, left:right] = normalised[batch - 1 - i][:, top:bottom, left:right]
        torch.testing.assert_close(out['inputs'][i], expected, rtol=0, atol=0)
    area = (bottom - top) * (right - left) / size ** 2
    expected_scores = torch.zeros(batch, 6)
    for i in range(batch):
        expected_scores[i, labels[i]] += 1 - area
        expected_scores[i, labels[batch - 1 - i]] += area
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    torch.testing.assert_close(scores, expected_scores, rtol=0, atol=1e-6)
