"""Progress bars that stay readable in a log file: MMEngine's ``ProgressBar``, throttled outside a terminal."""
import sys
from typing import Iterable, Optional

from mmengine.utils import ProgressBar

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


__all__ = ['ThrottledProgressBar', 'track']
