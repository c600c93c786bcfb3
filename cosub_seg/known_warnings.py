"""Warnings of the libraries underneath that say nothing a user of this package can act on, hidden by message.

:func:`cosub_seg.runtime.install` (every tool, every config of ours through ``custom_imports``) installs these
filters for the rest of the process; while ``import cosub_seg`` imports MMEngine and mmseg, :func:`quiet_imports`
hides them and then puts the process's filters back as they were. Each matches one message, by its start, and the
category it is raised with; every other warning still shows. A fine-tuning run printed each of these, ~8 in all
(some once per data-loader worker):

* ``pkg_resources is deprecated``: setuptools, about MMEngine importing ``pkg_resources`` (twice at start-up);
* ``build_loss would be deprecated``: mmseg calling its own old builder for the decode heads' losses;
* ``Default avg_non_ignore is False``: mmseg's CrossEntropyLoss announcing the default that mmseg's recipes (and
  ours) train with;
* ``The draw is False``: mmseg's SegVisualizationHook when it is not asked to draw, i.e. in every training run
  (``--show-dir`` turns drawing on);
* ``reduce_zero_label will be deprecated``: mmseg's LoadAnnotations, about the argument mmseg's own ADE20k configs
  use.
"""
import warnings
from contextlib import contextmanager

KNOWN_WARNINGS = (
    (UserWarning, r'pkg_resources is deprecated as an API'),
    (UserWarning, r'``build_loss`` would be deprecated soon'),
    (UserWarning, r'Default ``avg_non_ignore`` is False'),
    (UserWarning, r'The draw is False, it means that the hook for visualization will not take effect'),
    (UserWarning, r'`reduce_zero_label` will be deprecated'),
)


def filter_known_warnings() -> None:
    """Hides :data:`KNOWN_WARNINGS` (``warnings.filterwarnings('ignore', message, category)`` for each)."""
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)


@contextmanager
def quiet_imports():
    """Hides :data:`KNOWN_WARNINGS` inside the block only (``warnings.catch_warnings`` restores the filters)."""
    with warnings.catch_warnings():
        filter_known_warnings()
        yield


__all__ = ['KNOWN_WARNINGS', 'filter_known_warnings', 'quiet_imports']
