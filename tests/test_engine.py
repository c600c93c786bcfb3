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

    from cosub_seg.runtime.launch import add_train_args, config_from_args
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


def test_use_bn_without_gpu_rewrites_every_syncbn_in_nested_dicts_and_lists(monkeypatch):
    """Without a GPU every dict whose type is 'SyncBN', at any depth of dicts, lists and tuples, becomes 'BN' and
    nothing else changes (compared with a copy the test rewrites by hand); with a GPU the config is left alone."""
    import copy

    from cosub_seg.runtime import launch

    def config():
        return dict(
            type='CosubEncoderDecoder',
            backbone=dict(type='TimmSegBackbone', norm_cfg=dict(type='SyncBN', requires_grad=True)),
            decode_head=dict(norm_cfg=dict(type='SyncBN'), loss_decode=[dict(type='CrossEntropyLoss')]),
            auxiliary_head=[dict(norm_cfg=dict(type='SyncBN', eps=1e-3)), dict(norm_cfg=dict(type='GN'))],
            necks=(dict(layers=[dict(norm=dict(type='SyncBN'))]), ),
            norm_name='SyncBN',  # a string, not a norm config: stays
        )
    expected = config()
    expected['backbone']['norm_cfg']['type'] = 'BN'
    expected['decode_head']['norm_cfg']['type'] = 'BN'
    expected['auxiliary_head'][0]['norm_cfg']['type'] = 'BN'
    expected['necks'][0]['layers'][0]['norm']['type'] = 'BN'
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    cfg = config()
    launch.use_bn_without_gpu(cfg)
    assert cfg == expected
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: True)
    cfg = config()
    launch.use_bn_without_gpu(cfg)
    assert cfg == config()
    # The same on an MMEngine Config (ConfigDict nodes), as the tools call it.
    from mmengine.config import Config
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    mm = Config(dict(model=copy.deepcopy(config())))
    launch.use_bn_without_gpu(mm.model)
    assert mm.model.to_dict() == expected


SLURM_ENV = dict(SLURM_PROCID='5', SLURM_NTASKS='8', SLURM_LOCALID='1', SLURM_NODELIST='node[07-08]')


def test_slurm_variables_become_torch_env_variables(tmp_path, monkeypatch):
    """slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID become RANK / WORLD_SIZE / LOCAL_RANK, MASTER_ADDR is
    the first host of ``scontrol show hostnames $SLURM_NODELIST`` (a fake scontrol on PATH that records its
    arguments) and MASTER_PORT 29500; variables already set are kept."""
    from cosub_seg.runtime.dist import _slurm_env_to_torch_env
    calls = tmp_path / 'calls'
    scontrol = tmp_path / 'scontrol'
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nprintf "node07\\nnode08\\n"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}:{os.environ["PATH"]}')
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    _slurm_env_to_torch_env()
    got = {key: os.environ[key] for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    assert got == dict(RANK=SLURM_ENV['SLURM_PROCID'], WORLD_SIZE=SLURM_ENV['SLURM_NTASKS'],
                       LOCAL_RANK=SLURM_ENV['SLURM_LOCALID'], MASTER_ADDR='node07', MASTER_PORT='29500')
    assert calls.read_text() == 'show hostnames node[07-08]\n'
    # Set by the user (or torchrun): kept; scontrol is not asked when MASTER_ADDR is known.
    monkeypatch.setenv('RANK', '2')
    monkeypatch.setenv('MASTER_ADDR', '10.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '1234')
    _slurm_env_to_torch_env()
    assert (os.environ['RANK'], os.environ['MASTER_ADDR'], os.environ['MASTER_PORT']) == ('2', '10.0.0.1', '1234')
    assert calls.read_text() == 'show hostnames node[07-08]\n'
