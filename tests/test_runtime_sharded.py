"""cosub_seg/runtime/sharded.py: sharded training (FSDP) through MMEngine's wrapper under CosubRunner.

Fast: the wrap policy picks the residual blocks of every family, the sharded EMA's arithmetic equals MMEngine's
ExponentialMovingAverage, --fsdp's config, and the optimiser-state numbering. Slow: 2 gloo processes on the CPU
(tools/dist_pretrain.sh --fsdp): the loss curve and the weights equal a DDP run's at the same global batch, the
checkpoint is the file a DDP run writes (same keys, same optimiser numbering and groups), a SIGTERM mid-run then the
same command resumes to bit-identical weights, FSDP resumes a DDP checkpoint, and a segmentation backbone loads the
sharded pretraining's checkpoint."""
import argparse
import os.path as osp
import re
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import ExponentialMovingAverage

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.errors import ConfigError
from cosub_seg.models.checkpointing import residual_blocks
from cosub_seg.models.classifier import CosubClassifier
from cosub_seg.runtime.launch import add_train_args, apply_fsdp
from cosub_seg.runtime.sharded import DEFAULT_FSDP_CFG, ShardedEMA, clean_key, residual_block_wrap_policy

from helpers import ROOT, digits_options, scalars, seg_options
from test_runtime_preemption import PREEMPTED_EXIT_STATUS, finish, load, signal_when_ready, start
from test_stochastic_depth import FAMILIES

@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_the_wrap_policy_makes_each_residual_block_a_unit(family):
    arch, kwargs, _ = FAMILIES[family]
    model = CosubClassifier(arch, num_classes=4, model_kwargs=kwargs,
                            stochastic_depth=dict(rate=0.5, schedule='constant', compute='skip'))
    chosen = [m for m in model.modules() if residual_block_wrap_policy(m, recurse=False, nonwrapped_numel=0)]
    assert chosen and [id(m) for m in chosen] == [id(m) for m in residual_blocks(model)]
    assert residual_block_wrap_policy(model, recurse=True, nonwrapped_numel=0)


def test_the_sharded_average_follows_mmengines_ema_step_for_step():
    """On an unsharded module ShardedEMA's shards are whole tensors: its average must equal MMEngine's
    ExponentialMovingAverage after the same updates (copy at step 0, then lerp every interval), buffers included,
    and swapping twice must give the weights back."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    reference = ExponentialMovingAverage(model, momentum=0.1, interval=2, update_buffers=True)
    ours = ShardedEMA(model, momentum=0.1, interval=2, update_buffers=True)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model(torch.randn(8, 4))  # BatchNorm's running statistics move
        reference.update_parameters(model)
        ours.update()
    expected = reference.module.state_dict()
    names = [name for name, _ in model.named_parameters()] + [name for name, _ in model.named_buffers()]
    for name, average in zip(names, ours.average):
        assert torch.equal(average, expected[name]), name
    # The same numbers by hand for one weight: steps 0..4, copy at 0, lerp at 2 and 4.
    assert ours.steps == 5 == int(reference.steps)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ours.swap()
    assert torch.equal(model[0].weight, expected['0.weight'])
    ours.swap()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_fsdp_flag_sets_mmengines_wrapper_and_refuses_a_conflicting_one():
    args = add_train_args(argparse.ArgumentParser()).parse_args(['x.py', '--fsdp'])
    assert args.fsdp
    cfg = Config(dict(model=dict(type='X')))
    apply_fsdp(cfg, 'pytorch')
    assert cfg.model_wrapper_cfg == DEFAULT_FSDP_CFG
    assert cfg.model_wrapper_cfg['type'] == 'MMFullyShardedDataParallel'
    own = Config(dict(model_wrapper_cfg=dict(type='MMFullyShardedDataParallel', auto_wrap_policy=None)))
    apply_fsdp(own, 'pytorch')  # the config's own FSDP settings stay
    assert own.model_wrapper_cfg.auto_wrap_policy is None
    with pytest.raises(ConfigError, match='model_wrapper_cfg'):
        apply_fsdp(Config(dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel'))), 'pytorch')


def test_wrapped_names_are_the_modules_own():
    assert clean_key('_fsdp_wrapped_module.backbone.blocks.0._fsdp_wrapped_module.attn.qkv.weight') == \
        'backbone.blocks.0.attn.qkv.weight'


# ---- 2 gloo processes ---------------------------------------------------------------------------------------------

PRETRAIN = 'configs/pretrain/cosub_deit3-tiny_digits.py'
SEG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
# The tiny recipe has no EMA; the runs here keep one that moves (DeiT's momentum would leave it at the start).
BODY = ("custom_hooks = [dict(type='StepEMAHook', momentum=0.01, update_buffers=True, priority='ABOVE_NORMAL')]\n"
        "env_cfg = dict(dist_cfg=dict(timeout=60))\n")


def config(tmp_path, name, body=''):
    path = tmp_path / name
    path.write_text(f'_base_ = [{osp.join(ROOT, PRETRAIN)!r}]\n'
                    "custom_imports = dict(imports=['cosub_seg', 'cosub_seg.runtime.installed', 'fault_injection'], "
                    "allow_failed_imports=False)\n" + BODY + body)
    return str(path)


def dist_run(cfg, work_dir, options, port, *extra):
    return start(['bash', 'tools/dist_pretrain.sh', cfg, '2', '--work-dir', work_dir, *extra, '--cfg-options',
                  *options], env=dict(PYTHON=sys.executable, PORT=str(port)))


def losses(work_dir):
    return [(s['step'], s['loss']) for s in scalars(work_dir) if 'loss' in s]


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


@pytest.mark.slow
def test_fsdp_on_two_processes_matches_ddp_resumes_exactly_and_hands_over_to_segmentation(digits_root, tmp_path):
    options = digits_options(digits_root, epochs=2, per_epoch_images=16)  # 2 x 4 images a step, 2 steps an epoch
    plain = config(tmp_path, 'plain.py')
    ready = tmp_path / 'ready'
    ready.mkdir()
    preempted = config(tmp_path, 'preempted.py', 'default_hooks = dict(pause=dict(type="PauseForSignalHook", '
                       f'iteration=3, ready_dir={str(ready)!r}))\n')
    ddp, fsdp, stopped, from_ddp = (str(tmp_path / name) for name in ('ddp', 'fsdp', 'stopped', 'from_ddp'))

    code, log = finish(dist_run(plain, ddp, options, 29571))
    assert code == 0, log[-6000:]
    code, log = finish(dist_run(plain, fsdp, options, 29572, '--fsdp'))
    assert code == 0, log[-6000:]
    # Sharded: rank 0 holds about half of the weights, in one unit per block plus one per top-level child.
    units, held, total = (int(n.replace(',', '')) for n in re.search(
        r'FSDP: (\d+) units, this process holds ([\d,]+) of ([\d,]+) parameters', log).groups())
    assert units >= 3 and 0.4 < held / total < 0.6, (units, held, total)

    # The same loss curve and weights as DDP at the same global batch (float32 sums in another order: 1e-5).
    ddp_losses, fsdp_losses = losses(ddp), losses(fsdp)
    assert [s for s, _ in ddp_losses] == [s for s, _ in fsdp_losses] == [1, 2, 3, 4]
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(ddp_losses, fsdp_losses)), (ddp_losses, fsdp_losses)
    a, b = load(osp.join(ddp, 'epoch_2.pth')), load(osp.join(fsdp, 'epoch_2.pth'))
    assert max_difference(a['state_dict'], b['state_dict']) < 1e-5
    assert max_difference(a['ema_state_dict'], b['ema_state_dict']) < 1e-5
    assert int(b['ema_state_dict']['steps']) == 4
    # The file a DDP run writes: the optimiser state numbered and grouped alike (weight decay decided on the full
    # shapes, not on the 1-D shards), the moments equal.
    oa, ob = a['optimizer'], b['optimizer']
    assert oa['param_groups'] == ob['param_groups'] and sorted(oa['state']) == sorted(ob['state'])
    assert max(max_difference(oa['state'][i], ob['state'][i]) for i in oa['state']) < 1e-6
    assert not torch.equal(a['state_dict']['backbone.head.weight'], a['ema_state_dict']['module.backbone.head.weight'])

    # SIGTERM to torchrun before iteration 3; the same command resumes to bit-identical weights, average and moments.
    run = dist_run(preempted, stopped, options, 29573, '--fsdp')
    signal_when_ready(run, str(ready), ranks=2)
    code, log = finish(run)
    assert code != 0 and 'SIGTERM received: stopping after iteration 3' in log, log[-6000:]
    assert f'exiting with status {PREEMPTED_EXIT_STATUS}' in log
    assert load(osp.join(stopped, 'iter_3.pth'))['meta']['iter'] == 3
    code, log = finish(dist_run(preempted, stopped, options, 29574, '--fsdp'))
    assert code == 0, log[-6000:]
    assert 'resumed epoch: 1, iter: 3' in log
    c = load(osp.join(stopped, 'epoch_2.pth'))
    for key in ('state_dict', 'ema_state_dict'):
        assert max_difference(b[key], c[key]) == 0, key
    assert all(max_difference(ob['state'][i], c['optimizer']['state'][i]) == 0 for i in ob['state'])

    # FSDP resumes DDP's epoch-1 checkpoint (model, average and optimiser re-sharded) and ends where DDP ended.
    code, log = finish(dist_run(plain, from_ddp, options, 29575, '--fsdp', '--resume', osp.join(ddp, 'epoch_1.pth')))
    assert code == 0, log[-6000:]
    d = load(osp.join(from_ddp, 'epoch_2.pth'))
    assert max_difference(a['state_dict'], d['state_dict']) < 1e-5
    assert max_difference(a['ema_state_dict'], d['ema_state_dict']) < 1e-5

    # Hand-off: the segmentation backbone loads the sharded run's checkpoint (its averaged weights).
    from cosub_seg.models.seg_backbone import TimmSegBackbone
    seg = Config.fromfile(osp.join(ROOT, SEG))
    settings = {k: v for k, v in seg.model.backbone.items() if k != 'type'}
    assert seg.model.backbone.type == 'TimmSegBackbone'
    backbone = TimmSegBackbone(**dict(settings, init_cfg=dict(type='Pretrained',
                                                              checkpoint=osp.join(fsdp, 'epoch_2.pth'))))
    backbone.init_weights()
    own = backbone.model.state_dict()
    averaged = {k[len('backbone.'):]: v for k, v in b['state_dict'].items() if k.startswith('backbone.')}
    compared = [k for k in own if k in averaged and own[k].shape == averaged[k].shape]
    assert 'blocks.0.attn.qkv.weight' in compared and len(compared) > 20
    assert all(torch.equal(own[k], averaged[k]) for k in compared)

    # UperNet fine-tuning from it, sharded (the decode and auxiliary heads are called through loss() / predict(),
    # so their layers are the units) and not: the same losses and weights.
    from cosub_seg.datasets.digit_scenes import write_digit_scenes
    scenes = str(tmp_path / 'scenes')
    write_digit_scenes(scenes, num_train=8, num_val=2)
    seg_opts = seg_options(scenes, checkpoint=osp.join(fsdp, 'epoch_2.pth'), iters=3) + [
        'randomness.deterministic=True', 'randomness.seed=3']
    runs = {}
    for name, extra, port in (('seg_ddp', (), 29576), ('seg_fsdp', ('--fsdp', ), 29577)):
        work_dir = str(tmp_path / name)
        code, log = finish(start(['bash', 'tools/dist_train_seg.sh', SEG, '2', '--work-dir', work_dir, *extra,
                                  '--cfg-options', *seg_opts], env=dict(PYTHON=sys.executable, PORT=str(port))))
        assert code == 0, log[-6000:]
        runs[name] = (losses(work_dir), load(osp.join(work_dir, 'iter_3.pth')))
    (ddp_seg, ddp_file), (fsdp_seg, fsdp_file) = runs['seg_ddp'], runs['seg_fsdp']
    assert [s for s, _ in ddp_seg] == [s for s, _ in fsdp_seg] == [1, 2, 3]
    assert all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(ddp_seg, fsdp_seg)), (ddp_seg, fsdp_seg)
    assert max_difference(ddp_file['state_dict'], fsdp_file['state_dict']) < 1e-5
