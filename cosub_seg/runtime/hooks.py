"""Hooks that make training survive kills, numerical faults, bad data and wrong checkpoints.

All are registered in MMEngine's root registry, so configs of either scope (``cosub_seg``, ``mmseg``) and mmseg's
own tools build them from ``default_hooks``:

* :class:`ExactResumeHook`: seeds every training step from ``(seed, step, rank)`` and puts the data sampler where the
  checkpoint left it, so a resumed run ends with the same weights as one that was never interrupted;
* :class:`GlobalMeanLogHook`: logs the scalars of the whole global batch (the mean over all processes);
* :class:`NonFiniteLossHook`: stops at the first non-finite loss, before the step can reach a checkpoint; counts the
  steps fp16 loss scaling skips;
* :class:`SkippedSampleLogHook`: logs and counts the bad samples ``CheckedDataset(on_bad_sample='skip')`` skipped;
* :class:`CheckpointFitHook`: refuses a checkpoint whose tensors do not fit the model (e.g. a head trained for
  another number of classes), which MMEngine would load partly with only a warning;
* :class:`ProgressBarHook`: a progress bar over evaluation (``tools/test_seg.py`` adds it);
* :class:`PredictionVisualizationHook`: mmseg's ``SegVisualizationHook`` without building the training set in a test;
* :class:`StepEMAHook`: MMEngine's ``EMAHook``, updating the average once per optimiser step when gradients are
  accumulated, and keeping a sharded average of a sharded (FSDP) model.
"""
import math
import re
import sys
from typing import Optional, Sequence

import torch
from mmengine.dist import all_reduce, get_dist_info, is_main_process
from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from mmseg.engine.hooks import SegVisualizationHook

from ..errors import ConfigError, TrainingStopped
from ..progress import ThrottledProgressBar
from .checked_data import SKIPPED_SAMPLES_KEY
from .randomness import STEP_DOMAIN, derive_seed, seed_everything
from .sharded import ShardedEMA, is_sharded



def _train_sampler(dataloader):
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    return getattr(batch_sampler, 'sampler', None) or getattr(dataloader, 'sampler', None)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Makes a resumed run replay exactly what an uninterrupted run would have done.

    * Before every training step it seeds the global generators from ``(seed, step, rank)``
      (:func:`cosub_seg.runtime.randomness.seed_everything`), so the step's randomness (stochastic depth, dropout,
      mixup) depends on nothing that happened before it, a resume included.
    * After a resume it tells a :class:`cosub_seg.runtime.ReproducibleSampler` where the checkpoint left off: in
      an epoch-based loop the resumed epoch leaves out the batches already trained on (MMEngine would restart the
      epoch from its first batch); in ``IterBasedTrainLoop``, which fetches and discards the batches already
      trained on, those fetches become placeholders that load nothing. The position follows from the checkpoint's
      ``meta.epoch`` and ``meta.iter`` and the loader's length, which a resume must not change anyway.

    With another sampler the hook still seeds the steps and warns that the data after a resume may differ.
    """

    priority = 'HIGHEST'

    def before_train(self, runner) -> None:
        if runner.iter == 0:
            return
        loader = runner.train_dataloader
        sampler = _train_sampler(loader)
        if not hasattr(sampler, 'resume_within_epoch'):
            runner.logger.warning(
                f'the train sampler is a {type(sampler).__name__}, not a ReproducibleSampler: the data order and '
                'augmentation after this resume may differ from an uninterrupted run')
            return
        batch_size = loader.batch_size or loader.batch_sampler.batch_size
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            sampler.fast_forward(runner.iter * batch_size)
            return
        done = runner.iter - runner.epoch * len(loader)
        if done > 0:
            sampler.resume_within_epoch(done * batch_size)
            runner.logger.info(f'resuming inside epoch {runner.epoch + 1}: its first {done} batches are left out')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        rank, _ = get_dist_info()
        seed_everything(derive_seed(STEP_DOMAIN, runner.seed, runner.iter, rank))


@HOOKS.register_module()
class GlobalMeanLogHook(Hook):
    """Replaces the step's logged scalars (``loss``, its terms, accuracies) by their mean over all processes: the
    values of the whole global batch, rather than of rank 0's share. It runs first after each step (before
    :class:`NonFiniteLossHook`, which then sees a fault of any process); a run of one process is left as it is."""

    priority = 0  # 'HIGHEST'; NonFiniteLossHook comes right after it

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        if not outputs or get_dist_info()[1] == 1:
            return
        keys = [k for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
        values = torch.stack([outputs[k].detach().float().reshape(()) for k in keys])
        all_reduce(values, op='mean')
        outputs.update({k: v for k, v in zip(keys, values)})


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training at the first non-finite loss, naming the iteration and every loss term.

    It runs before every other hook of the step but :class:`GlobalMeanLogHook`, so the step's weights (already
    updated with non-finite gradients) never reach the EMA or a checkpoint: the newest checkpoint stays the last good
    one. Behind :class:`GlobalMeanLogHook` it sees the mean over all processes, so a fault on any process stops all
    of them together. With fp16 loss scaling (``AmpOptimWrapper``, dynamic scale) a non-finite gradient is expected
    now and then: the scaler skips the step and halves its scale; such steps are counted and logged, not fatal,
    unless ``max_skipped_in_a_row`` happen in a row.

    Args:
        max_skipped_in_a_row: consecutive steps skipped by loss scaling after which training stops.
    """

    priority = 1  # right after GlobalMeanLogHook (0, 'HIGHEST'), before every other hook

    def __init__(self, max_skipped_in_a_row: int = 50):
        self.max_skipped_in_a_row = max_skipped_in_a_row
        self._scale_before: Optional[float] = None
        self._skipped_in_a_row = 0

    @staticmethod
    def _loss_scaler(runner):
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        scaler = self._loss_scaler(runner)
        self._scale_before = float(scaler.get_scale()) if scaler is not None else None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        if not outputs:
            return
        keys = [k for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
        values = [float(outputs[k].detach()) for k in keys]
        step = runner.iter + 1
        scaler = self._loss_scaler(runner)
        if scaler is not None and self._scale_before is not None and scaler.get_scale() < self._scale_before:
            self._skipped_in_a_row += 1
            total = runner.message_hub.get_info('amp_skipped_steps', 0) + 1
            runner.message_hub.update_info('amp_skipped_steps', total)
            runner.logger.info(f'fp16 loss scaling skipped step {step} (non-finite gradients; scale '
                               f'{self._scale_before:g} -> {scaler.get_scale():g}); {total} skipped so far')
            if self._skipped_in_a_row >= self.max_skipped_in_a_row:
                raise TrainingStopped(
                    f'fp16 loss scaling skipped {self._skipped_in_a_row} steps in a row (up to iteration {step}): '
                    'the gradients are non-finite at any scale. Resume from the last checkpoint with a lower '
                    'learning rate, gradient clipping or bf16.')
            return
        self._skipped_in_a_row = 0
        if all(math.isfinite(v) for k, v in zip(keys, values) if 'loss' in k):
            return
        terms = ', '.join(f'{k}={v:.6g}' for k, v in zip(keys, values) if 'loss' in k)
        last = runner.message_hub.get_info('last_ckpt', None)
        where = (f'the newest checkpoint, {last}, holds weights from before the fault; resume from it (--resume)'
                 if last else 'no checkpoint has been written yet; start again') + \
            ' with a lower learning rate or gradient clipping (optim_wrapper.clip_grad), or look for a bad input in ' \
            'this step'
        raise TrainingStopped(f'non-finite loss at iteration {step} (epoch {runner.epoch + 1}): {terms}. Training '
                              f'stops before this step reaches a checkpoint: {where}.')


@HOOKS.register_module()
class SkippedSampleLogHook(Hook):
    """Logs each training sample that ``CheckedDataset(on_bad_sample='skip')`` skipped, with its files and error,
    and keeps their count over all processes in the message hub (``skipped_bad_samples``, saved in checkpoints)."""

    priority = 'NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
        reports = []
        for sample in samples or []:
            reports += getattr(sample, 'metainfo', {}).get(SKIPPED_SAMPLES_KEY, [])
        for report in reports:  # the iteration also keeps MMEngine's logger from dropping a repeated warning
            runner.logger.warning(f'iteration {runner.iter + 1}: skipped bad training sample {report}')
        count = torch.tensor([len(reports)], dtype=torch.int64)
        all_reduce(count)
        if count.item():
            total = runner.message_hub.get_info(SKIPPED_SAMPLES_KEY, 0) + count.item()
            runner.message_hub.update_info(SKIPPED_SAMPLES_KEY, total)
            runner.logger.warning(f'{count.item()} bad training samples skipped at iteration {runner.iter + 1}, '
                                  f'{total} in all')


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Refuses to load (``load_from``, ``resume``, evaluation) a checkpoint whose tensors have other shapes than the
    model's: MMEngine would load the rest and keep those layers random, with only a warning.

    Args:
        ignore_keys: regular expressions of parameter names whose shapes may differ (e.g. ``'decode_head.conv_seg'``
            to fine-tune a segmentation checkpoint on another class set: those layers then start afresh).
    """

    priority = 'VERY_HIGH'

    def __init__(self, ignore_keys: Sequence[str] = ()):
        self.ignore_keys = list(ignore_keys)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('state_dict', checkpoint)
        if hasattr(runner, 'state_shapes'):  # CosubRunner: the unsharded shapes of a sharded (FSDP) model too
            own = runner.state_shapes()
        else:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            own = {key: value.shape for key, value in model.state_dict().items()}
        mismatched = []
        for key, value in state.items():
            name = re.sub(r'^module\.', '', key)
            if (name in own and isinstance(value, torch.Tensor) and value.shape != own[name]
                    and not any(re.search(pattern, name) for pattern in self.ignore_keys)):
                mismatched.append((name, tuple(value.shape), tuple(own[name])))
        if not mismatched:
            return
        source = runner.cfg.get('load_from') or 'the checkpoint being loaded'
        lines = '; '.join(f'{name}: {a} in the checkpoint, {b} in the model' for name, a, b in mismatched[:6])
        message = f'{source} does not fit the model built from the config ({lines}).'
        if all(a[1:] == b[1:] for _, a, b in mismatched):
            classes = sorted({(a[0], b[0]) for _, a, b in mismatched})
            message += (' Only the output size differs: the checkpoint was trained for '
                        f'{" / ".join(str(a) for a, _ in classes)} classes and the config has '
                        f'{" / ".join(str(b) for _, b in classes)}. Use the num_classes the checkpoint was trained '
                        'with, or to train these layers afresh list them in default_hooks.checkpoint_fit.ignore_keys.')
        raise ConfigError(message)


# MMEngine's logger reports evaluation every ``logger.interval`` batches (50 in mmseg's runtime), which on a short test
# set prints nothing until the end; ProgressBarHook updates a progress bar after every batch instead, as mmseg 0.x's
# single_gpu_test did. Counts are images of this process (rank 0 prints; in a distributed run every rank gets a
# similar share).
@HOOKS.register_module()
class ProgressBarHook(Hook):
    """Shows ``[>>>>   ] 40/150, 12.3 task/s, elapsed: 3s, ETA: 9s`` over the images of a test (and, with
    ``val=True``, of every validation) run.

    Args:
        val: also show it during validation (off by default: validation during training already logs).
    """

    priority = 'VERY_LOW'

    def __init__(self, val: bool = False):
        self.val = val
        self._bar: Optional[ThrottledProgressBar] = None

    def _start(self, dataloader) -> None:
        if not is_main_process():
            return
        sampler = getattr(dataloader, 'sampler', None)
        total = len(sampler) if sampler is not None and hasattr(sampler, '__len__') else len(dataloader.dataset)
        self._bar = ThrottledProgressBar(total, file=sys.stdout)

    def _update(self, outputs) -> None:
        if self._bar is not None:
            self._bar.update(max(1, len(outputs) if outputs is not None else 1))

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar.file.flush()
            self._bar = None

    def before_test_epoch(self, runner) -> None:
        self._start(runner.test_dataloader)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._update(outputs)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._finish()

    def before_val_epoch(self, runner) -> None:
        if self.val:
            self._start(runner.val_dataloader)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._update(outputs)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._finish()


class _RunnerWithoutTrainLoop:
    """A view of a Runner whose ``iter`` does not build the training loop: MMEngine's ``Runner.iter`` builds it (and
    so the training set) when it was not built yet, e.g. in a test run."""

    def __init__(self, runner):
        self._runner = runner

    def __getattr__(self, name):
        return getattr(self._runner, name)

    @property
    def iter(self) -> int:
        loop = self._runner._train_loop
        return loop.iter if isinstance(loop, BaseLoop) else 0


@HOOKS.register_module()
class PredictionVisualizationHook(SegVisualizationHook):
    """mmseg's ``SegVisualizationHook`` (same arguments and pictures) that numbers its pictures without building the
    training loop. mmseg's asks ``runner.iter`` for the step, which in a test run builds the training loop and its
    dataset: ``test.py --show-dir`` then failed where only the validation data is on disk (an exported model
    evaluated elsewhere)."""

    def _after_iter(self, runner, batch_idx: int, data_batch: dict, outputs, mode: str = 'val') -> None:
        super()._after_iter(_RunnerWithoutTrainLoop(runner), batch_idx, data_batch, outputs, mode)


@HOOKS.register_module()
class StepEMAHook(EMAHook):
    """MMEngine's ``EMAHook`` (same arguments, same checkpoint entries), but with gradient accumulation
    (``optim_wrapper.accumulative_counts = k``) it updates the average only after the iterations where the optimiser
    stepped. MMEngine's updates after every iteration, so with k = 2 it would average each set of weights twice
    (the second time unchanged) and halve the horizon its momentum was chosen for (DeiT's 0.99996 per step).

    With a sharded model (FSDP, ``runtime/sharded.py``) the average is a :class:`~cosub_seg.runtime.sharded.ShardedEMA`
    (each process averages its own shard; MMEngine's would deep-copy the wrapped module), with the same arithmetic and
    the same checkpoint entries: the runner gathers it on every process through :meth:`gather_checkpoint` before the
    main process writes the file."""

    def before_run(self, runner) -> None:
        if not is_sharded(runner.model):
            self.sharded = None
            return super().before_run(runner)
        cfg = dict(self.ema_cfg)
        if cfg.pop('type') != 'ExponentialMovingAverage' or set(cfg) - {'momentum', 'interval', 'update_buffers'}:
            raise ConfigError('a sharded (FSDP) run averages weights with ExponentialMovingAverage(momentum, '
                              f'interval, update_buffers) only; the EMA hook has {self.ema_cfg}')
        self.sharded = ShardedEMA(runner.model, **cfg)
        self._gathered = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        wrapper = runner.optim_wrapper
        if getattr(wrapper, '_accumulative_counts', 1) > 1 and not wrapper.should_update():
            return  # the gradients were only accumulated: the weights did not change
        if self.sharded is None:
            return super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if self._ema_started(runner):
            self.sharded.update()
        else:
            self.sharded.copy_from_model()

    def _swap_ema_parameters(self) -> None:
        if self.sharded is None:
            return super()._swap_ema_parameters()
        self.sharded.swap()

    def gather_checkpoint(self, runner) -> None:
        """Called by the runner on every process before a sharded model's checkpoint is written: gathers the full
        average (a collective), which :meth:`before_save_checkpoint` then puts in the file."""
        if self.sharded is not None:
            self._gathered = self.sharded.gather()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.sharded is None:
            return super().before_save_checkpoint(runner, checkpoint)
        if self._gathered is None:
            raise RuntimeError('a sharded model\'s checkpoint is written by CosubRunner, which gathers the average '
                               'first')
        checkpoint['ema_state_dict'], self._gathered = self._gathered, None
        # As MMEngine's: the average goes under state_dict (what a deployment loads), the raw weights under
        # ema_state_dict.
        self._swap_ema_state_dict(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.sharded is None:
            return super().after_load_checkpoint(runner, checkpoint)
        if 'ema_state_dict' in checkpoint and runner._resume:
            self._swap_ema_state_dict(checkpoint)  # the file holds the average under state_dict, as MMEngine's
            self.sharded.load(checkpoint['ema_state_dict'])
        else:
            # The average starts from the checkpoint's weights: loaded into the model just after this hook.
            self.sharded.steps = 0
