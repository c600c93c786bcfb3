"""Every change this package makes to torch, MMEngine and Python for the whole process, in one place.

``import cosub_seg`` changes nothing outside the package (it registers its modules in MMEngine's and mmseg's
registries, which is what importing a plugin is for). A training or evaluation run needs five process-wide changes,
which :func:`install` makes, once (calling it again does nothing):

1. **MMEngine's loader for local files** (``CheckpointLoader`` scheme ``''``: ``load_from``, ``resume``,
   ``init_cfg=dict(type='Pretrained')``, mmseg's ``init_model`` and tools) becomes
   :func:`load_from_local_weights_only`. MMEngine calls ``torch.load`` without ``weights_only``, so the environment
   variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would turn unpickling of arbitrary code back on there; ours passes
   ``weights_only=True`` explicitly (which the variable cannot override), reads ``.safetensors`` too and names the
   file it refuses.
2. **torch's allow-list for weights-only loading** gets :func:`cosub_seg.checkpoint.training_state_globals` (the
   message hub's ``HistoryBuffer``, NumPy arrays and scalars), so that any ``torch.load(weights_only=True)`` of a
   training checkpoint in the process works, not only ours.
3. **How MMEngine's ``HistoryBuffer`` pickles** (``copyreg``, the standard way to define how a third-party class
   pickles): as its data alone (log and count arrays, maximum length). MMEngine pickles its whole ``__dict__``, which
   after training holds bound statistics methods (``getattr(HistoryBuffer, 'min')``), and a file needing ``getattr``
   is refused by weights-only loading; allowing ``getattr`` would let a file reach any attribute of an allowed class.
4. **Warnings** of the libraries that say nothing a user can act on are hidden by message
   (:mod:`cosub_seg.known_warnings`).
5. **Copies of torch's** ``StorageWeakRef`` (``torch.multiprocessing.reductions``; fake tensors, ``torch.export``
   and AOTAutograd key dictionaries by it) are the object itself. It holds one weak reference to a storage as an
   integer and frees it in ``__del__``; ``copy.copy`` and ``copy.deepcopy`` (a deep copy of a fake tensor copies its
   ``FakeTensorMode`` and the mode's ``StorageWeakRef`` keys) made a second object with the same integer, so the
   reference was freed twice and the second free wrote into a freed ``StorageImpl``: heap corruption that crashed the
   process later, somewhere else. The object is immutable, so sharing it is what a copy of it should do.

Who calls it: every tool of ``tools/`` and ``cosub_seg/cli/`` first thing, and every config of ours through
``custom_imports=dict(imports=['cosub_seg', 'cosub_seg.runtime.installed'])``, so mmseg's and MMEngine's own tools
get the same protection with our configs. Code of your own that trains with MMEngine on our checkpoints calls
``cosub_seg.runtime.install()``.
"""
import copyreg
import os.path as osp

import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from ..checkpoint import load_checkpoint_file, training_state_globals
from ..known_warnings import filter_known_warnings

_installed = False


def load_from_local_weights_only(filename: str, map_location=None) -> dict:
    """MMEngine's loader for local paths (``CheckpointLoader`` scheme ''), through
    :func:`cosub_seg.checkpoint.load_checkpoint_file` (safetensors, or ``torch.load(weights_only=True)``)."""
    return load_checkpoint_file(osp.expanduser(filename), map_location=map_location)


def _reduce_history_buffer(buffer: HistoryBuffer):
    log_history, count_history = buffer.data
    return HistoryBuffer, (log_history, count_history, buffer.max_length)


def _same_weak_ref(ref, memo=None):
    return ref


def _share_storage_weak_ref_copies() -> None:
    from torch.multiprocessing.reductions import StorageWeakRef
    StorageWeakRef.__copy__ = _same_weak_ref
    StorageWeakRef.__deepcopy__ = _same_weak_ref


def install() -> None:
    """Makes the process-wide changes listed in this module's docstring; idempotent."""
    global _installed
    if _installed:
        return
    filter_known_warnings()
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals(training_state_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)
    _share_storage_weak_ref_copies()
    _installed = True


def is_installed() -> bool:
    """Whether :func:`install` has run in this process."""
    return _installed


__all__ = ['install', 'is_installed', 'load_from_local_weights_only']
