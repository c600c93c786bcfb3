"""CosubClassifier: independent drop masks per copy, the loss it optimises, prediction."""
import pytest
import torch
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
    model = tiny_vit(num_submodels=1)
    losses = model(torch.randn(2, 3, 32, 32), samples([1, 2]), mode='loss')
    assert losses['loss_peer'].item() == 0.0
    assert losses['loss_label'].item() > 0


def test_cosub_without_stochastic_depth_is_refused():
    with pytest.raises(ValueError, match='drop_path_rate'):
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
