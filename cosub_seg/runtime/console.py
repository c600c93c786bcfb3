"""A console a person can read: what MMEngine's Runner prints in full goes to the log file, the console gets a line.

MMEngine's Runner writes the same records to the console and to ``<work_dir>/<timestamp>/<timestamp>.log``. Of the
~480 lines a tiny fine-tuning run printed, ~440 were reference material: the system and runtime environment (~35
lines), the whole config (~310 lines; it is also written to ``<work_dir>/<config name>.py``), the order of every
hook's methods (~95 lines), one ``paramwise_options`` line per parameter setting of MMEngine's optimiser constructor
(70 in pretraining), and deprecation notices MMEngine prints about its own internals. :class:`CosubRunner` (the
Runner the tools build) keeps all of it in the log file and puts :class:`ConsoleSummaryFilter` on the console
handler (with :class:`ConsoleSummaryFormatter`), which shortens the first three to one line each that says where the
full text is, and drops the rest.
"""
import logging
import os.path as osp
import re
from typing import Optional

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import LOG_PROCESSORS, RUNNERS
from mmengine.runner import LogProcessor, Runner

from .sharded import ShardedRunnerMixin

# Console records dropped: per-parameter optimiser settings (NoDecayOptimWrapperConstructor logs a summary) and
# notices about MMEngine's and mmseg's internals that a user can do nothing about.
DROPPED = (
    re.compile(r'^paramwise_options -- '),
    re.compile(r'^"FileClient" will be deprecated in future'),
    re.compile(r'^"HardDiskBackend" is the alias of "LocalBackend"'),
    re.compile(r'^The prefix is not set in metric class '),
)


class ConsoleSummaryFilter(logging.Filter):
    """On a console handler: leaves out the records matching :data:`DROPPED`, and (:meth:`summary`, applied by
    :class:`ConsoleSummaryFormatter`) shortens the environment report, the config and the hook order to one line
    each naming ``log_file``, where they are in full. The record itself is not changed: the log file, whose handler
    sees the same record, keeps the full text."""

    def __init__(self, log_file: Optional[str] = None, config_copy: Optional[str] = None):
        super().__init__()
        self.where = f'the log file {log_file}' if log_file else 'the log file'
        self.config_copy = config_copy

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in DROPPED)

    def summary(self, message: str) -> Optional[str]:
        """The one line standing for ``message`` on the console, or None to print it as it is."""
        if message.startswith('\n' + '-' * 60 + '\nSystem environment:'):
            found = dict(re.findall(r'^ {4}(Python|PyTorch|CUDA available|seed|Distributed training|GPU number): '
                                    r'(.*)$', message, re.M))
            python = found.get('Python', '?').split(' ')[0]
            return (f'Environment: Python {python}, PyTorch {found.get("PyTorch", "?")}, CUDA available: '
                    f'{found.get("CUDA available", "?")}, processes: {found.get("GPU number", "?")}, seed '
                    f'{found.get("seed", "?")} (the full report is in {self.where})')
        if message.startswith('Config:\n'):
            copy = f' and in {self.config_copy}' if self.config_copy else ''
            return f'Config: {len(message.splitlines()) - 1} lines, in {self.where}{copy}'
        if message.startswith('Hooks will be executed in the following order'):
            hooks = sorted(set(re.findall(r'^\(\s*\w+\s*\) (\w+)', message, re.M)))
            return f'Hooks: {", ".join(hooks)} (their order is in {self.where})'
        return None


class ConsoleSummaryFormatter(logging.Formatter):
    """Formats a record with the console handler's own formatter, but a copy of it carrying the summary line where
    :meth:`ConsoleSummaryFilter.summary` gives one."""

    def __init__(self, formatter: logging.Formatter, summaries: ConsoleSummaryFilter):
        super().__init__()
        self.formatter = formatter
        self.summaries = summaries

    def format(self, record: logging.LogRecord) -> str:
        short = self.summaries.summary(record.getMessage())
        if short is not None:
            record = logging.makeLogRecord(dict(record.__dict__, msg=short, args=None))
        return self.formatter.format(record)


def summarise_console(logger: logging.Logger, config_copy: Optional[str] = None) -> None:
    """Puts :class:`ConsoleSummaryFilter` and :class:`ConsoleSummaryFormatter` on every console handler of
    ``logger`` (not on its file handlers); ``config_copy`` is where the run writes its config."""
    log_file = next((h.baseFilename for h in logger.handlers if isinstance(h, logging.FileHandler)), None)
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            if not any(isinstance(f, ConsoleSummaryFilter) for f in handler.filters):
                summaries = ConsoleSummaryFilter(log_file, config_copy)
                handler.addFilter(summaries)
                handler.setFormatter(ConsoleSummaryFormatter(handler.formatter or logging.Formatter(), summaries))


@LOG_PROCESSORS.register_module()
class CompactLogProcessor(LogProcessor):
    """MMEngine's LogProcessor, but an array metric (the confusion matrix of ``ConfusionMatrixMetric``) is logged as
    its shape, not printed whole across dozens of wrapped lines; the JSON log (``<timestamp>/<timestamp>.json``)
    still holds every number."""

    def get_log_after_epoch(self, runner, batch_idx: int, mode: str, with_non_scalar: bool = False):
        tag, log_str = super().get_log_after_epoch(runner, batch_idx, mode, with_non_scalar)
        for name, value in self._collect_non_scalars(runner, mode).items():
            if isinstance(value, (torch.Tensor, np.ndarray)):
                shape = 'x'.join(str(n) for n in value.shape)
                # The text LogProcessor wrote for it: f'{name}: \n{value}\n'.
                log_str = log_str.replace(f'{name}: \n{value}\n', f'{name}: {shape} array (in the JSON log)')
        return tag, log_str


@RUNNERS.register_module()
class CosubRunner(ShardedRunnerMixin, Runner):
    """MMEngine's Runner with a readable console (:class:`ConsoleSummaryFilter`; the log file is unchanged) that also
    trains a sharded (FSDP) model (:class:`~cosub_seg.runtime.sharded.ShardedRunnerMixin`). The tools build it
    unless a config names its own ``runner_type``."""

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        # Where Runner.dump_config writes the config.
        name = osp.basename(self.cfg.filename) if self.cfg.filename else f'{self.timestamp}.py'
        summarise_console(logger, osp.join(self.work_dir, name))
        return logger


    def scale_lr(self, optim_wrapper, auto_scale_lr: Optional[dict] = None) -> None:
        """MMEngine's linear learning-rate scaling (``--auto-scale-lr``), counting the batch the optimiser steps on:
        MMEngine's counts processes x per-process batch, which with ``optim_wrapper.accumulative_counts = k`` is a
        k-th of it."""
        counts = getattr(optim_wrapper, '_accumulative_counts', 1)
        if counts > 1 and auto_scale_lr and auto_scale_lr.get('enable', False):
            print_log(f'auto_scale_lr: gradients are accumulated over {counts} iterations, so the batch of each '
                      f'optimiser step is {counts}x the one MMEngine logs next', logger='current')
            auto_scale_lr = dict(auto_scale_lr, base_batch_size=auto_scale_lr['base_batch_size'] / counts)
        super().scale_lr(optim_wrapper, auto_scale_lr)


def build_runner(cfg) -> Runner:
    """The config's ``runner_type`` if it names one, else :class:`CosubRunner`."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg else CosubRunner.from_cfg(cfg)


__all__ = ['ConsoleSummaryFilter', 'ConsoleSummaryFormatter', 'summarise_console', 'CompactLogProcessor', 'CosubRunner',
           'build_runner']
