"""``ProgressBarHook``: a progress bar with counts, speed and ETA over evaluation.

MMEngine's logger reports evaluation every ``logger.interval`` batches (50 in mmseg's runtime), which on a short
test set prints nothing until the end; this hook updates MMEngine's ``ProgressBar`` after every batch instead, as
mmseg 0.x's ``single_gpu_test`` did. Counts are images of this process (rank 0 prints; in a distributed run every
rank gets a similar share).
"""
import sys
from typing import Iterable, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar
from mmseg.registry import HOOKS as SEG_HOOKS

from ..registry import HOOKS

STEPS_OFF_TERMINAL = 20  # updates a bar writes when its output is not a terminal (a log file, a pipe)


def _is_terminal(file) -> bool:
    return bool(getattr(file, 'isatty', None)) and file.isatty()


class ThrottledProgressBar(ProgressBar):
    """MMEngine's ProgressBar; outside a terminal (a log file, a pipe) it writes only every 1/20 of the way and at
    the end, instead of a ``\\r[>>>  ] n/N`` line per item (16 KB for a checkpoint's tensors, 200 KB for 2,000
    test images), which a log keeps as one unreadable line."""

    def __init__(self, task_num: int = 0, bar_width: int = 50, start: bool = True, file=sys.stdout):
        self._pending = 0
        self._every = 1 if _is_terminal(file) else max(1, task_num // STEPS_OFF_TERMINAL)
        super().__init__(task_num, bar_width, start, file)

    def update(self, num_tasks: int = 1):
        self._pending += num_tasks
        done = self.completed + self._pending
        if self._pending >= self._every or (self.task_num > 0 and done >= self.task_num):
            pending, self._pending = self._pending, 0
            super().update(pending)


def track(items: Iterable, total: Optional[int] = None, file=sys.stdout) -> Iterable:
    """Iterates over ``items`` with a progress bar in a terminal, and silently elsewhere."""
    if not _is_terminal(file):
        yield from items
        return
    items = list(items) if total is None else items
    bar = ProgressBar(len(items) if total is None else total, file=file)
    for item in items:
        yield item
        bar.update()
    file.write('\n')


@SEG_HOOKS.register_module()
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


__all__ = ['ProgressBarHook', 'ThrottledProgressBar', 'track']
