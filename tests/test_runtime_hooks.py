"""cosub_seg/runtime/hooks.py, on a toy MMEngine run: CheckpointFitHook refuses a checkpoint that does not fit the
model (and loads one that does); NonFiniteLossHook stops before a non-finite step reaches a checkpoint, counts the
steps fp16 loss scaling skipped and stops when it skips every step. The other hooks are checked through the runs of
the tools (test_tools_*.py)."""
import os
import re

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook

import cosub_seg  # noqa: F401  (registers the modules)

from helpers import ToyModel, toy_runner


def test_a_checkpoint_whose_head_has_other_classes_is_refused(tmp_path):
    other = ToyModel()
    other.linear = nn.Linear(2, 3, bias=False)  # three outputs where the model has one
    path = str(tmp_path / 'other.pth')
    torch.save({'state_dict': other.state_dict(), 'meta': {}}, path)
    runner = toy_runner(tmp_path, hooks=dict(checkpoint_fit=dict(type='CheckpointFitHook')), cfg=dict(load_from=path))
    expected = f'{path} does not fit the model built from the config (linear.weight: (3, 2) in the checkpoint, (1, 2)'
    with pytest.raises(ValueError, match=re.escape(expected) + '.*trained for 3 classes and the config has 1'):
        runner.load_checkpoint(path)
    relaxed = toy_runner(tmp_path, hooks=dict(checkpoint_fit=dict(type='CheckpointFitHook', ignore_keys=['linear'])))
    initial = relaxed.model.linear.weight.detach().clone()
    relaxed.load_checkpoint(path)  # allowed: the layer keeps its initialisation
    assert relaxed.model.linear.weight.shape == (1, 2)
    torch.testing.assert_close(relaxed.model.linear.weight.detach(), initial, rtol=0, atol=0)
    # And a checkpoint that fits is loaded: its weights, not the initialisation, are in the model afterwards.
    fitting = ToyModel()
    with torch.no_grad():
        fitting.linear.weight.copy_(torch.tensor([[0.25, -1.5]]))
    torch.save({'state_dict': fitting.state_dict(), 'meta': {}}, str(tmp_path / 'fits.pth'))
    relaxed.load_checkpoint(str(tmp_path / 'fits.pth'))
    torch.testing.assert_close(relaxed.model.linear.weight.detach(), torch.tensor([[0.25, -1.5]]), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- numerical faults


def test_a_non_finite_loss_stops_before_the_checkpoint_of_its_epoch(tmp_path):
    runner = toy_runner(tmp_path, hooks=dict(non_finite_loss=dict(type='NonFiniteLossHook')), dataset_size=4)
    dataset = runner.train_dataloader.dataset
    dataset[3]['inputs'] = torch.tensor([float('inf'), 1.0])  # second batch of every epoch: iteration 2
    with pytest.raises(FloatingPointError, match=r'non-finite loss at iteration 2 \(epoch 1\): loss=(nan|inf)\. '
                                                 'Training stops before this step reaches a checkpoint: no checkpoint'):
        runner.train()
    assert not [f for f in os.listdir(runner.work_dir) if f.endswith('.pth')]


def amp_runner(tmp_path, monkeypatch, inf_at, max_skipped_in_a_row=50, **kwargs):
    """A toy run with MMEngine's AmpOptimWrapper and dynamic loss scaling on the CPU: the wrapper only refuses to be
    built without a GPU, and torch's GradScaler works on the CPU. The inputs of the listed iterations hold 1e30, so
    their scaled gradients overflow float32."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    runner = toy_runner(tmp_path, epochs=1, dataset_size=12, hooks=dict(
        non_finite_loss=dict(type='NonFiniteLossHook', max_skipped_in_a_row=max_skipped_in_a_row)),
        optim_wrapper=dict(type='AmpOptimWrapper', optimizer=dict(type='SGD', lr=0.01)), **kwargs)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.optim_wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 16)
    for iteration in inf_at:
        for row in (2 * iteration - 2, 2 * iteration - 1):
            runner.train_dataloader.dataset[row]['inputs'] = torch.tensor([1e30, 1.0])
    return runner


class WeightLog(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.weights = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights.append(runner.model.linear.weight.detach().clone())


def test_steps_skipped_by_fp16_loss_scaling_are_counted_not_fatal(tmp_path, monkeypatch):
    log = WeightLog()
    runner = amp_runner(tmp_path, monkeypatch, inf_at=[2, 5], custom_hooks=[log])
    runner.train()
    assert runner.message_hub.get_info('amp_skipped_steps') == 2
    # Two halvings, no growth (GradScaler doubles only after 2000 good steps).
    assert runner.optim_wrapper.loss_scaler.get_scale() == 2.0 ** 14
    w = log.weights
    assert len(w) == 6 and all(torch.isfinite(x).all() for x in w)
    assert torch.equal(w[1], w[0]) and torch.equal(w[4], w[3])  # skipped: the weights did not move
    assert not torch.equal(w[2], w[1]) and not torch.equal(w[5], w[4])


def test_fp16_loss_scaling_that_skips_every_step_stops(tmp_path, monkeypatch):
    runner = amp_runner(tmp_path, monkeypatch, inf_at=[2, 3, 4], max_skipped_in_a_row=3)
    with pytest.raises(FloatingPointError, match=r'fp16 loss scaling skipped 3 steps in a row \(up to iteration 4\)'):
        runner.train()


# ---------------------------------------------------------------------------------------------- gradient accumulation


def _accumulation_setup(counts, momentum=0.5):
    """A tiny ViT classifier without stochastic depth, so k = 1 (cosub's copies need drop masks, and random masks
    would differ between a half batch and the whole one), AdamW through MMEngine's OptimWrapper with
    ``accumulative_counts``, and a stand-in runner for the EMA hooks."""
    from types import SimpleNamespace

    from mmengine.optim import OptimWrapper
    from mmengine.structures import BaseDataElement

    from cosub_seg.models import CosubClassifier
    from mmengine.registry import DefaultScope
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        model = CosubClassifier(arch='deit3_small_patch16_224', num_classes=4, num_submodels=1,
                                stochastic_depth=dict(rate=0.0),
                                data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=4),
                                model_kwargs=dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2))
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2), accumulative_counts=counts)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    labels = [i % 4 for i in range(8)]

    def batch(rows):
        return dict(inputs=[images[i] for i in rows], data_samples=[BaseDataElement(gt_label=torch.tensor([labels[i]]))
                                                                    for i in rows])
    runner = SimpleNamespace(model=model, optim_wrapper=wrapper, iter=0, epoch=0)
    return model, wrapper, batch, runner


def test_gradient_accumulation_over_two_steps_equals_one_step_of_the_double_batch():
    """MMEngine's accumulative_counts with our classifier: two half batches accumulated, then one step, give the
    weights one step on the whole batch gives (the loss is a mean over the batch; no BatchNorm here)."""
    model_a, wrapper_a, batch, _ = _accumulation_setup(counts=2)
    model_b, wrapper_b, _, _ = _accumulation_setup(counts=1)
    model_a.train(), model_b.train()
    start = {k: v.clone() for k, v in model_a.state_dict().items()}
    model_a.train_step(batch(range(4)), wrapper_a)
    assert all(torch.equal(v, start[k]) for k, v in model_a.state_dict().items())  # accumulated, not stepped
    model_a.train_step(batch(range(4, 8)), wrapper_a)
    model_b.train_step(batch(range(8)), wrapper_b)
    changed = 0
    for name, value in model_b.state_dict().items():
        torch.testing.assert_close(model_a.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
        changed += not torch.equal(value, start[name])
    assert changed > 10


def test_step_ema_hook_averages_once_per_optimiser_step():
    """With accumulation over 2 iterations, StepEMAHook updates after iterations 2 and 4 only: its average is the
    lerp of the weights after the two optimiser steps, worked out here; MMEngine's EMAHook updates 4 times."""
    from mmengine.hooks import EMAHook

    from cosub_seg.runtime import StepEMAHook
    model, wrapper, batch, runner = _accumulation_setup(counts=2)
    ours, theirs = StepEMAHook(momentum=0.5), EMAHook(momentum=0.5)
    ours.before_run(runner), theirs.before_run(runner)
    model.train()
    after_steps = []
    for it, rows in enumerate((range(4), range(4, 8), range(2, 6), range(0, 8, 2))):
        runner.iter = it
        model.train_step(batch(rows), wrapper)
        ours.after_train_iter(runner, it)
        theirs.after_train_iter(runner, it)
        if it % 2 == 1:
            after_steps.append({k: v.detach().clone() for k, v in model.named_parameters()})
    assert int(ours.ema_model.steps) == 2 and int(theirs.ema_model.steps) == 4
    ema = dict(ours.ema_model.module.named_parameters())
    for name, first in after_steps[0].items():
        # the first update copies the weights, the second moves halfway (momentum 0.5) to the new ones
        torch.testing.assert_close(ema[name], first + 0.5 * (after_steps[1][name] - first), msg=name)
    assert not torch.equal(dict(theirs.ema_model.module.named_parameters())['backbone.head.weight'],
                           ema['backbone.head.weight'])
