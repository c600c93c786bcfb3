"""models/pretrained.py (the weights loader of both stages) and the fine-tuning start of ``CosubClassifier``
(``init_cfg=dict(type='Pretrained')``), with the layer-wise lr decay of a classifier (engine/layer_decay.py): position
embeddings against a bicubic resize worked in the test, the classifier replaced for another class count and kept for
the same one, every other tensor equal to the file's, and the refusals (patch size, shapes, a grid smaller than one
patch). Fast."""
import logging

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.errors import ConfigError, MissingFileError
from cosub_seg.models.classifier import CosubClassifier
from cosub_seg.models.pretrained import classifier_names, load_timm_weights

# The digits backbone of `make demo` (configs/pretrain/cosub_deit3-tiny_digits.py), two blocks.
DIGITS = dict(patch_size=8, embed_dim=64, depth=2, num_heads=2)


def classifier(num_classes=10, img_size=32, pretrained=None, **kwargs):
    init_cfg = dict(type='Pretrained', checkpoint=pretrained) if pretrained else None
    return CosubClassifier('deit3_small_patch16_224', num_classes=num_classes, num_submodels=1,
                           stochastic_depth=dict(rate=0.0), model_kwargs=dict(DIGITS, img_size=img_size, **kwargs),
                           init_cfg=init_cfg)


@pytest.fixture
def checkpoint_32(tmp_path):
    """A checkpoint as tools/pretrain.py writes it (MMEngine: 'state_dict', 'backbone.' names), 32 px, 10 classes."""
    torch.manual_seed(0)
    source = classifier()
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1), state_dict=source.state_dict()), path)
    return str(path), {k[len('backbone.'):]: v for k, v in source.state_dict().items()}


def bicubic_grid(pos: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """(1, old*old, C) position embeddings resized to a new x new grid: bicubic on the (C, old, old) map, with
    antialiasing (PIL's kernel, which timm's resample_abs_pos_embed uses)."""
    channels = pos.shape[-1]
    grid = pos.reshape(1, old, old, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode='bicubic', antialias=True, align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new * new, channels)


def test_fine_tuning_at_48_resamples_the_position_embeddings_and_replaces_the_classifier(checkpoint_32):
    path, source = checkpoint_32
    torch.manual_seed(1)
    model = classifier(num_classes=5, img_size=48, pretrained=path)
    fresh_head = model.backbone.head.weight.detach().clone()
    model.init_weights()
    state = model.backbone.state_dict()
    # DeiT III keeps the class token out of the position embeddings: 4x4 patches at 32 px, 6x6 at 48.
    assert source['pos_embed'].shape == (1, 16, 64) and state['pos_embed'].shape == (1, 36, 64)
    torch.testing.assert_close(state['pos_embed'], bicubic_grid(source['pos_embed'], 4, 6), rtol=0, atol=1e-6)
    # The classifier: a new one for 5 classes (as timm initialised it), not a slice of the file's 10.
    assert state['head.weight'].shape == (5, 64)
    assert torch.equal(state['head.weight'], fresh_head)
    # Everything else is the file's.
    for key, value in source.items():
        if key not in ('pos_embed', 'head.weight', 'head.bias'):
            assert torch.equal(state[key], value), key
    assert model.is_init
    # A few steps run and the loss moves with the loaded weights.
    model.train()
    logits = model(torch.randn(2, 3, 48, 48))
    assert logits.shape == (2, 5)


def test_the_same_class_count_keeps_the_classifier_and_the_grid_keeps_the_embeddings(checkpoint_32):
    path, source = checkpoint_32
    model = classifier(num_classes=10, img_size=32, pretrained=path)
    model.init_weights()
    state = model.backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items())
    report = load_timm_weights(model.backbone, path)
    assert report.replaced_head == [] and report.missing == [] and report.unused == []


def test_the_loader_reports_what_it_did_and_refuses_what_does_not_fit(checkpoint_32, tmp_path):
    path, _ = checkpoint_32
    target = classifier(num_classes=3).backbone
    report = load_timm_weights(target, path)
    assert report.replaced_head == ['head.bias', 'head.weight']
    assert 'blocks.0.attn.qkv.weight' in report.loaded and 'head.weight' not in report.loaded
    with pytest.raises(ConfigError, match='classifier'):
        load_timm_weights(classifier(num_classes=3).backbone, path, head='strict')
    # Another width: refused with the key and both shapes.
    with pytest.raises(ConfigError, match=r'cls_token: \(1, 1, 64\) in the file, \(1, 1, 32\) here'):
        load_timm_weights(CosubClassifier('deit3_small_patch16_224', num_classes=10, num_submodels=1,
                                          model_kwargs=dict(DIGITS, embed_dim=32, img_size=32)).backbone, path)
    # Another patch size: refused before timm's filter would resample the kernel.
    with pytest.raises(ConfigError, match=r'patch_embed.proj.weight is a \(8, 8\) patch kernel.*\(16, 16\)'):
        load_timm_weights(classifier(img_size=32, patch_size=16).backbone, path)


def test_a_missing_checkpoint_says_which_option_names_it(tmp_path):
    model = classifier(pretrained=str(tmp_path / 'nowhere.pth'))
    with pytest.raises(MissingFileError, match=r'model.init_cfg.checkpoint.*--checkpoint'):
        model.init_weights()


def test_an_image_size_below_one_patch_is_refused_and_a_remainder_warned(caplog):
    with pytest.raises(ConfigError, match='smaller than one 8-pixel patch'):
        classifier(img_size=6)
    logger = MMLogger.get_current_instance()
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    try:
        classifier(img_size=36)
    finally:
        logger.removeHandler(handler)
    assert any('not a multiple of the patch size 8' in m and 'last 4 pixel' in m for m in messages), messages


def test_classifier_names_are_the_heads_of_each_family():
    assert classifier_names(classifier().backbone) == ['head.weight', 'head.bias']
    from timm import create_model
    assert classifier_names(create_model('convnext_atto', num_classes=3)) == ['head.fc.weight', 'head.fc.bias']
    assert classifier_names(create_model('convnext_atto', num_classes=0)) == []


def test_layer_wise_lr_decay_of_a_classifier_being_fine_tuned():
    model = classifier(num_classes=5)
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        wrapper = build_optim_wrapper(model, dict(
            type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1),
            constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=0.5)))
    lr_of = {id(p): g['lr'] for g in wrapper.optimizer.param_groups for p in g['params']}
    wd_of = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    params = dict(model.named_parameters())
    # Layers: stem 0, blocks 1..2, the classifier (and the final norm, timm's last group) at the top, L = 3.
    assert lr_of[id(params['backbone.patch_embed.proj.weight'])] == pytest.approx(1e-3 * 0.5 ** 3)
    assert lr_of[id(params['backbone.blocks.0.attn.qkv.weight'])] == pytest.approx(1e-3 * 0.5 ** 2)
    assert lr_of[id(params['backbone.blocks.1.attn.qkv.weight'])] == pytest.approx(1e-3 * 0.5 ** 1)
    assert lr_of[id(params['backbone.head.weight'])] == pytest.approx(1e-3)
    assert wd_of[id(params['backbone.head.weight'])] == 0.1 and wd_of[id(params['backbone.head.bias'])] == 0.0
    assert wd_of[id(params['backbone.pos_embed'])] == 0.0
    # The default constructor does not read layer_decay_rate: asking it to is refused, not ignored.
    with pytest.raises(ConfigError, match='LayerDecayOptimWrapperConstructor'):
        with DefaultScope.overwrite_default_scope('cosub_seg'):
            build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
                                            constructor='NoDecayOptimWrapperConstructor',
                                            paramwise_cfg=dict(layer_decay_rate=0.5)))
