"""Hooks that inject faults into a training run, for the reliability tests.

A test writes a config that inherits a real one, imports this module (``custom_imports``, with tests/ on
PYTHONPATH) and adds one of these hooks to ``default_hooks``.
"""
import os
import signal

import torch
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
