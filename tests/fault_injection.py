"""Hooks that inject faults into a training run, for the reliability tests, and one that reports what a run is
made of (for the GPU tests).

A test writes a config that inherits a real one, imports this module (``custom_imports``, with tests/ on
PYTHONPATH) and adds one of these hooks to ``default_hooks``.
"""
import collections
import os
import signal
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillAtIterationHook(Hook):
    """SIGKILLs the process (or only ``rank``) at the end of training iteration ``iteration`` (1-based), after every
    other hook of that iteration, a checkpoint save included."""

    priority = 'LOWEST'

    def __init__(self, iteration: int, rank=None):
        self.iteration = iteration
        self.rank = rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration and self.rank in (None, get_dist_info()[0]):
            _die()


@HOOKS.register_module()
class KillDuringSaveHook(Hook):
    """SIGKILLs the process in the middle of the checkpoint save that starts at or after iteration ``iteration``
    (completed iterations): the data is in the temporary file, which is about to be renamed to its final name."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta'].get('iter', 0) >= self.iteration:
            os.replace = lambda src, dst: _die()


@HOOKS.register_module()
class PauseForSignalHook(Hook):
    """Before training iteration ``iteration`` (1-based), writes ``<ready_dir>/ready.<rank>`` and waits (at most
    ``timeout`` seconds) until this process's PreemptionHook has received a signal: a test then sends a real signal
    from outside, and the run is preempted after exactly that iteration."""

    def __init__(self, iteration: int, ready_dir: str, timeout: float = 120):
        self.iteration = iteration
        self.ready_dir = ready_dir
        self.timeout = timeout

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 != self.iteration:
            return
        preemption = next(h for h in runner.hooks if type(h).__name__ == 'PreemptionHook')
        with open(os.path.join(self.ready_dir, f'ready.{get_dist_info()[0]}'), 'w') as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not preemption.received:
            if time.monotonic() > deadline:
                raise RuntimeError(f'PauseForSignalHook: no signal within {self.timeout} s')
            time.sleep(0.02)


@HOOKS.register_module()
class SignalDuringSaveHook(Hook):
    """Sends SIGTERM to the process in the middle of the save of the checkpoint of iteration ``iteration``: its bytes
    are in the temporary file, about to be renamed to the final name."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta'].get('iter') != self.iteration:
            return
        replace = os.replace

        def signal_then_replace(src, dst):
            os.replace = replace
            os.kill(os.getpid(), signal.SIGTERM)
            replace(src, dst)
        os.replace = signal_then_replace


@HOOKS.register_module()
class NonFiniteWeightsHook(Hook):
    """Sets one weight of the model to NaN before training iteration ``iteration`` (1-based), so that the loss of
    that step is NaN."""

    priority = 'LOWEST'

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iteration:
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float('nan')


def _bare(model):
    return model.module if hasattr(model, 'module') else model


@HOOKS.register_module()
class OverflowAtIterationsHook(Hook):
    """Makes the classifier's logits infinite in training iterations ``iterations`` (1-based), so that the loss and
    every gradient of those steps are non-finite: what an fp16 overflow does to a step. Logs the logits' dtype at
    the first iteration (``probe: logits dtype ...``), which shows the autocast the run used."""

    priority = 'LOWEST'

    def __init__(self, iterations=()):
        self.iterations = set(iterations)
        self._handle = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        step = runner.iter + 1
        poison = step in self.iterations

        def hook(module, inputs, output):
            if step == 1:
                runner.logger.info(f'probe: logits dtype {output.dtype} on {output.device}')
            return output * float('inf') if poison else output
        self._handle = _bare(runner.model).backbone.register_forward_hook(hook)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@HOOKS.register_module()
class RunProbeHook(Hook):
    """Logs, before training, the distributed backend and world size and the normalisation layers the model was
    built with: ``probe: backend=nccl world_size=1 norm layers: SyncBatchNorm x 7, LayerNorm x 25``."""

    def before_train(self, runner):
        backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else 'none'
        counts = collections.Counter(type(m).__name__ for m in _bare(runner.model).modules()
                                     if isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)))
        layers = ', '.join(f'{name} x {count}' for name, count in sorted(counts.items()))
        runner.logger.info(f'probe: backend={backend} world_size={get_dist_info()[1]} norm layers: {layers}')
