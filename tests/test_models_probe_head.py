"""LinearProbeHead and TimmSegBackbone(frozen=True), the linear segmentation probe of issue 14 (configs/probe/):
every probe recipe builds and trains with its backbone untouched (no gradient, weights equal before and after,
eval mode whatever train() asks) while the head learns; the prediction has the input's size; the head computes
resize + concat + BatchNorm + 1x1 convolution (checked against torch.nn.functional); bad arguments are refused."""
import glob
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.errors import ConfigError
from cosub_seg.models import LinearProbeHead
from cosub_seg.runtime.launch import use_bn_without_gpu

from test_configs import _seg_batch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROBES = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs/probe/linear-seg_*.py')))
CLASSES, SIZE = 5, 64


def test_the_probe_recipes_exist():
    assert PROBES == ['configs/probe/linear-seg_deit3-base_ade20k-512x512.py',
                      'configs/probe/linear-seg_deit3-tiny_digitscenes.py']


@pytest.mark.parametrize('config', PROBES)
def test_probe_trains_the_head_and_leaves_the_backbone_untouched(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.size = (SIZE, SIZE)
    cfg.model.decode_head.num_classes = CLASSES
    use_bn_without_gpu(cfg.model)
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert cfg.model.neck is None and cfg.model.auxiliary_head is None
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.decode_head.parameters())
    torch.manual_seed(0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in model.backbone.named_buffers()}
    model.train()
    # train() reaches the head (BatchNorm in training mode) but not the frozen network (no stochastic depth)
    assert model.decode_head.training and model.decode_head.bn.training
    assert not any(m.training for m in model.backbone.model.modules())
    losses = []
    for _ in range(3):
        log = model.train_step(_seg_batch(CLASSES, SIZE), wrapper)
        losses.append(log['decode.loss_ce'].item())
        assert all(p.grad is None for p in model.backbone.parameters())
    assert set(log) == {'loss', 'decode.loss_ce', 'decode.acc_seg'}  # no auxiliary head
    assert losses[0] == pytest.approx(math.log(CLASSES), rel=0.5)  # random labels: near ln(C) at the start
    after = dict(model.named_parameters())
    for name, value in before.items():
        if name.startswith('backbone.'):
            assert torch.equal(value, after[name]), name
    for name, value in model.backbone.named_buffers():
        assert torch.equal(buffers[name], value), name
    assert not torch.equal(before['decode_head.conv_seg.weight'], after['decode_head.conv_seg.weight'])
    assert not torch.equal(before['decode_head.bn.weight'], after['decode_head.bn.weight'])
    # The prediction has the input's size (the head's stride-8 or -16 logits are resized back).
    model.eval()
    batch = _seg_batch(CLASSES, SIZE, batch=1)
    with torch.no_grad():
        out = model.test_step(batch)
    assert out[0].seg_logits.data.shape == (CLASSES, SIZE, SIZE)
    assert out[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)


def test_the_head_is_resize_concat_batchnorm_and_a_1x1_convolution():
    torch.manual_seed(0)
    head = LinearProbeHead(in_channels=[3, 4], in_index=[1, 2], num_classes=6, dropout_ratio=0.0,
                           align_corners=False)
    head.bn.running_mean.uniform_(-1, 1)
    head.bn.running_var.uniform_(0.5, 2)
    head.bn.weight.data.uniform_(0.5, 2)
    head.bn.bias.data.uniform_(-1, 1)
    head.eval()
    maps = [torch.randn(2, 9, 16, 16), torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4)]
    out = head(maps)
    # independent computation: the second map's grid, the third resized to it (bilinear), concatenated
    x = torch.cat([maps[1], F.interpolate(maps[2], size=(8, 8), mode='bilinear', align_corners=False)], 1)
    x = F.batch_norm(x, head.bn.running_mean, head.bn.running_var, head.bn.weight, head.bn.bias, False, 0.0,
                     head.bn.eps)
    expected = F.conv2d(x, head.conv_seg.weight, head.conv_seg.bias)
    assert out.shape == (2, 6, 8, 8)
    torch.testing.assert_close(out, expected)


def test_the_head_refuses_mismatched_or_conflicting_arguments():
    with pytest.raises(ConfigError, match=r'in_channels and in_index must be lists of the same length.*'
                                          r'in_channels=\[3, 4\], in_index=\[1\]'):
        LinearProbeHead(in_channels=[3, 4], in_index=[1], num_classes=2)
    with pytest.raises(ConfigError, match=r"LinearProbeHead sets channels itself.*decode_head.channels=512"):
        LinearProbeHead(in_channels=[3], in_index=[0], num_classes=2, channels=512)
    with pytest.raises(ConfigError, match=r"input_transform"):
        LinearProbeHead(in_channels=[3], in_index=[0], num_classes=2, input_transform='multiple_select')
