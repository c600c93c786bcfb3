"""Checkpoints that survive a kill at any moment, and finding the newest complete one to resume from.

MMEngine 0.10 writes a checkpoint straight to its final name (``LocalBackend.put``), and its ``CheckpointHook``
deletes the oldest kept checkpoint *before* writing the new one. A process killed during the write (SIGKILL, a lost
node, a full disk) then leaves a truncated file under the final name, and with ``max_keep_ckpts=1`` nothing to
resume from at all. Here:

* :class:`AtomicLocalBackend` (MMEngine file backend ``'atomic_local'``) writes every file to a temporary name in
  the same folder, flushes and fsyncs it, then renames it over the final name (``os.replace``, atomic on POSIX) and
  fsyncs the folder: a file appears under its final name only when complete;
* :class:`SafeCheckpointHook` is MMEngine's ``CheckpointHook`` writing through that backend, deleting old
  checkpoints (``max_keep_ckpts``, the previous ``save_best`` file) only after the new one is complete, rewriting
  ``last_checkpoint`` atomically, and removing the temporary files a killed run left behind;
* :func:`find_resumable_checkpoint` picks the newest complete checkpoint of a work dir for ``--resume``.

Configs select the hook with ``default_hooks.checkpoint.type='SafeCheckpointHook'``; it is registered in MMEngine's
root registry, so mmseg's own tools (scope ``mmseg``) build it too.
"""
import glob
import os
import os.path as osp
import re
import secrets
import zipfile
from contextlib import contextmanager
from typing import List, Optional, Union

import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..checkpoint import training_state_allowed

PARTIAL_SUFFIX = '.partial'


def atomic_write(path: str, data: Union[bytes, memoryview]) -> None:
    """Writes ``data`` to ``path`` so that ``path`` holds either its previous content or all of ``data``.

    The bytes go to ``.<name>.<pid>.<random>.partial`` in the same folder (a rename is atomic only within one file
    system), are flushed and fsynced, and the file is renamed over ``path``; the folder is fsynced so the rename
    survives a power loss. On any error the temporary file is removed.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}')
    # os.open with mode 0o666 keeps the user's umask (tempfile.mkstemp would make the checkpoint private).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend whose writes (``put``, ``put_text``) are atomic (:func:`atomic_write`).

    Select it with ``backend_args=dict(backend='atomic_local')`` wherever MMEngine takes ``backend_args`` (e.g.
    ``CheckpointHook``); :class:`SafeCheckpointHook` uses it by default.
    """

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))


class _DeferredRemovals:
    """Stands in for the hook's file backend while a checkpoint is written: it records ``remove``/``rmtree`` calls
    instead of running them and forwards everything else."""

    def __init__(self, backend):
        self.backend = backend
        self.pending: List[str] = []

    def remove(self, path) -> None:
        self.pending.append(str(path))

    def rmtree(self, path) -> None:
        self.pending.append(str(path))

    def __getattr__(self, name):
        return getattr(self.backend, name)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` (same arguments) made safe against kills at any moment.

    * Every file is written through :class:`AtomicLocalBackend` (unless ``backend_args`` names another backend).
    * Old checkpoints (``max_keep_ckpts``) and the previous best checkpoint (``save_best``) are deleted only after
      the new checkpoint is complete: MMEngine deletes first, so a kill during the save could leave no checkpoint.
    * ``last_checkpoint`` (which MMEngine writes with a plain ``open``) is rewritten atomically after each save.
    * Temporary ``*.partial`` files that a killed save left in the checkpoint folder are removed when training
      (re)starts.
    """

    def __init__(self, *args, backend_args: Optional[dict] = None, file_client_args: Optional[dict] = None,
                 **kwargs):
        if backend_args is None and file_client_args is None:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args, file_client_args=file_client_args, **kwargs)
        self._deferring: Optional[_DeferredRemovals] = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        for folder in {str(self.out_dir), runner.work_dir}:
            for path in glob.glob(osp.join(folder, f'.*{PARTIAL_SUFFIX}')):
                os.remove(path)
                runner.logger.warning(f'removed {path}, left by a checkpoint save that did not finish')

    @contextmanager
    def _removals_after_save(self):
        """Defers the deletions MMEngine's hook makes while saving until the save is complete (re-entrant: saving a
        best checkpoint saves the latest one inside)."""
        if self._deferring is not None:
            yield
            return
        self._deferring = _DeferredRemovals(self.file_backend)
        self.file_backend = self._deferring
        try:
            yield
        finally:
            deferred, self._deferring = self._deferring, None
            self.file_backend = deferred.backend
        keep = {str(self.last_ckpt), str(getattr(self, 'best_ckpt_path', None))}
        keep.update(str(p) for p in getattr(self, 'best_ckpt_path_dict', {}).values())
        for path in deferred.pending:
            if path in keep:
                continue
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        with self._removals_after_save():
            super()._save_checkpoint_with_step(runner, step, meta)
            if is_main_process():
                atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), str(self.last_ckpt).encode())

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole checkpoint file: ``torch.save`` writes a zip archive whose central directory
    comes last, so a truncated file has none (legacy non-zip files are read in full instead)."""
    if not osp.isfile(path):
        return False
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return bool(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    try:
        with training_state_allowed():
            torch.load(path, map_location='cpu', weights_only=True, mmap=False)
    except Exception:  # noqa: BLE001  any failure to read means it cannot be resumed from
        return False
    return True


def _training_iteration(path: str) -> int:
    """The iteration a checkpoint was saved at (``meta.iter``), read with the tensors memory-mapped, not loaded."""
    with training_state_allowed():
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    return int(checkpoint.get('meta', {}).get('iter', -1))


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete checkpoint of ``work_dir`` that holds training state, or None.

    Candidates are the file ``last_checkpoint`` points to and the ``epoch_*.pth`` / ``iter_*.pth`` files of the
    folder (``best_*`` files have no optimiser state). Incomplete files are skipped with a warning (they can only
    come from writers other than :class:`SafeCheckpointHook`); among complete ones the highest ``meta.iter`` wins,
    then the most recent file.
    """
    candidates = set(glob.glob(osp.join(work_dir, '*.pth')))
    candidates = {p for p in candidates if re.fullmatch(r'(epoch|iter)_\d+\.pth', osp.basename(p))}
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.add(named)
    ranked = []
    for path in candidates:
        if not is_complete_checkpoint(path):
            if osp.exists(path):
                print_log(f'{path} is incomplete (a save that did not finish) and is not resumed from',
                          logger='current', level=30)
            continue
        try:
            ranked.append((_training_iteration(path), osp.getmtime(path), path))
        except Exception as err:  # noqa: BLE001
            print_log(f'{path} cannot be read ({err}) and is not resumed from', logger='current', level=30)
    return max(ranked)[2] if ranked else None
