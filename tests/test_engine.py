"""Optimiser set-up, metrics and checkpoint safety."""
import os

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import cosub_seg  # noqa: F401
from cosub_seg.evaluation import Accuracy
from cosub_seg.models import CosubClassifier


@pytest.fixture(autouse=True)
def scope():
    name = f'test-{os.getpid()}-{id(object())}'
    yield DefaultScope.get_instance(name, scope_name='cosub_seg')


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


def test_accuracy_against_counting_by_hand():
    metric = Accuracy(topk=(1, 2))
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = [1, 2, 1, 2]
    # top-1 hits: sample 0 only; top-2 hits: 0 (1 is first), 1 (2 is second), 2 (1 is second); 3 misses.
    metric.process(None, [dict(pred_score=s, gt_label=torch.tensor([y])) for s, y in zip(scores, labels)])
    result = metric.compute_metrics(metric.results)
    assert result == pytest.approx(dict(top1=25.0, top2=75.0))


def test_autocast_wrapper_runs_bf16_on_cpu():
    model = torch.nn.Linear(4, 2)
    wrapper = build_optim_wrapper(model, dict(type='AutocastOptimWrapper', dtype='bfloat16',
                                              optimizer=dict(type='SGD', lr=0.1)))
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16


class _Hostile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_the_allow_list_still_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=_Hostile(str(marker))), path)
    with pytest.raises(Exception, match='Unsupported global|weights_only'):
        torch.load(path, map_location='cpu')  # torch's default, weights_only=True, with our allow-list in force
    assert not marker.exists()


def test_history_buffer_pickles_its_data_only():
    import pickle
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(2.5, count=2)
    buffer.mean()  # statistics methods must not end up in the pickle
    restored = pickle.loads(pickle.dumps(buffer))
    assert b'getattr' not in pickle.dumps(buffer)
    assert restored.max_length == buffer.max_length
    assert [list(a) for a in restored.data] == [list(a) for a in buffer.data]


def test_command_line_switches_compile_and_bf16_for_both_stages():
    """--compile sets MMEngine's compile=True; --amp gives bf16 autocast on a CPU (AmpOptimWrapper on a GPU)."""
    import argparse

    from cosub_seg.engine.launch import add_train_args, config_from_args
    for config in ('configs/pretrain/cosub_deit3-tiny_digits.py',
                   'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'):
        args = add_train_args(argparse.ArgumentParser()).parse_args([config, '--compile', '--amp'])
        cfg = config_from_args(args)
        assert cfg.compile is True
        expected = 'AmpOptimWrapper' if torch.cuda.is_available() else 'AutocastOptimWrapper'
        assert cfg.optim_wrapper.type == expected
        assert cfg.optim_wrapper.dtype == ('float16' if torch.cuda.is_available() else 'bfloat16')
        plain = config_from_args(add_train_args(argparse.ArgumentParser()).parse_args([config]))
        assert 'compile' not in plain and plain.optim_wrapper.type == 'OptimWrapper'
