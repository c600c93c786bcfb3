"""Preemption: a signal ends a run after its current step with a complete checkpoint of that iteration, and the
same command run again resumes from it.

Shared clusters preempt jobs: slurm sends SIGTERM (or, some time before the time limit, the signal chosen with
``sbatch --signal``) and kills the job a grace period later. Without this, a run loses everything since its last
epoch checkpoint at each preemption. With :class:`PreemptionHook` (``default_hooks.preemption`` in the runtimes):

1. the signal only sets a flag (the handler, installed in the main thread when training starts and restored when
   it ends, does nothing else; a test or evaluation run keeps the default handlers);
2. after every training step all processes agree whether any of them got a signal (one all-reduce of one number),
   so all stop after the same step;
3. the run writes ``iter_<n>.pth`` at that step (mid-epoch too: ``meta.epoch`` is the epoch in progress, which
   :class:`cosub_seg.runtime.ExactResumeHook` resumes exactly), atomically (:func:`atomic_write`), points
   ``last_checkpoint`` at it, and rank 0 writes the marker ``<work_dir>/preempted.json``; if the save fails on the
   writing rank, every rank raises (no process believes a checkpoint exists that does not);
4. every process then raises :class:`TrainingPreempted`, a ``SystemExit`` with status :data:`PREEMPTED_EXIT_STATUS`
   (75, ``EX_TEMPFAIL``: "temporary failure, try again"), which ``tools/slurm_launch.sh`` turns into
   ``scontrol requeue``;
5. the training tools, started again with the same command line and no ``--resume``, see the marker and resume from
   the newest complete checkpoint of the work dir (:func:`preempted_marker`, used by
   :func:`cosub_seg.runtime.launch.config_from_args`). The marker is removed when a run in that work dir finishes
   training; the preemption checkpoint is deleted once a later regular checkpoint is complete.

A signal during validation takes effect at the next training step. The training set's data-loader workers ignore
these signals (:func:`shield_data_worker`): slurm signals them too. Signals that arrive while the checkpoint is
written (a second SIGTERM, torchrun forwarding one the process already got) are recorded and logged, nothing else:
the handler stays installed until the process exits, and the atomic write never leaves a partial file under a
checkpoint's name. Only SIGKILL (slurm's, after the grace period) can end the save, which then leaves the previous
checkpoints as they were.
"""
import atexit
import json
import multiprocessing
import os
import os.path as osp
import signal
import threading
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import all_reduce, barrier, get_dist_info, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from torch.utils.data import get_worker_info

from .checkpointing import atomic_write, is_complete_checkpoint

#: The exit status of a preempted run: ``EX_TEMPFAIL`` of sysexits.h. ``tools/slurm_launch.sh`` requeues the job on it.
PREEMPTED_EXIT_STATUS = 75
#: The file a preempted run leaves in its work dir; the training tools resume without ``--resume`` where it exists.
PREEMPTED_MARKER = 'preempted.json'
#: The message hub entry (saved in checkpoints) naming the preemption checkpoint a run resumed from.
PREEMPTION_CKPT_KEY = 'preemption_ckpt'


class TrainingPreempted(SystemExit):
    """Training stopped on a preemption signal after writing ``checkpoint`` at ``iteration``; its ``code`` is the
    exit status (:data:`PREEMPTED_EXIT_STATUS` unless the hook was given another)."""

    def __init__(self, checkpoint: str, iteration: int, signal_name: str, code: int = PREEMPTED_EXIT_STATUS):
        super().__init__(code)
        self.checkpoint = checkpoint
        self.iteration = iteration
        self.signal_name = signal_name

    def __str__(self) -> str:
        return (f'{self.signal_name}: training stopped after iteration {self.iteration} with checkpoint '
                f'{self.checkpoint}; exit status {self.code}')


def preempted_marker(work_dir: str) -> Optional[dict]:
    """What the marker of a preempted run in ``work_dir`` says (``checkpoint``, ``iteration``, ``signal``), or None
    where there is none. An unreadable marker still counts (``{}``): it can only come from a preempted run."""
    path = osp.join(work_dir, PREEMPTED_MARKER)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            content = json.load(f)
        return content if isinstance(content, dict) else {}
    except (OSError, ValueError):
        return {}


# The signals of the PreemptionHook built in this process, for the data-loader workers it forks afterwards (module
# state is inherited by fork, the start method of the runtimes), and a flag in shared memory that the main process
# sets when it exits.
_worker_signals: Tuple[signal.Signals, ...] = ()
_main_exiting = None
_shielded_pid: Optional[int] = None


def _mark_main_exiting() -> None:
    _main_exiting.value = 1


def _prepare_worker_shield(signals: Sequence[signal.Signals]) -> None:
    global _worker_signals, _main_exiting
    _worker_signals = tuple(signals)
    if _main_exiting is None:
        _main_exiting = multiprocessing.RawValue('b', 0)
        # Registered after multiprocessing's own exit function, so it runs before it: multiprocessing then ends its
        # daemonic children (the workers) with SIGTERM and waits for them.
        atexit.register(_mark_main_exiting)


def _worker_signal(signum, frame) -> None:
    if _main_exiting is not None and _main_exiting.value:
        os._exit(0)  # the main process is ending its workers (as torch's own handler does for its parent's SIGTERM)
    # Otherwise a preemption signal slurm sent every process: the main process saves, the worker serves on.


def shield_data_worker() -> None:
    """In a data-loader worker, outlives the preemption signals (once per process; :class:`CheckedDataset`, which
    wraps every training set, calls it for each sample; elsewhere it does nothing).

    Slurm signals every process of a job step, data-loader workers included. torch's handler in a worker dies on a
    SIGTERM its parent did not send, and the main process's SIGCHLD handler then raises "DataLoader worker exited
    unexpectedly" wherever the main thread is, in the preemption save too. Here a worker ignores such a signal and
    serves until the main process has saved; once the main process exits (a flag it sets at exit), a SIGTERM ends the
    worker as before, and a main process that leaves with ``os._exit`` is noticed by the workers' watchdog.
    """
    global _shielded_pid
    if not _worker_signals or _shielded_pid == os.getpid():
        return
    _shielded_pid = os.getpid()
    if get_worker_info() is None:
        return  # the main process (num_workers=0): the hook's handlers are its own
    for sig in _worker_signals:
        signal.signal(sig, _worker_signal)


def _signal_number(sig: Union[str, int]) -> signal.Signals:
    if isinstance(sig, str):
        name = sig.upper()
        name = name if name.startswith('SIG') else f'SIG{name}'
        if not hasattr(signal, name):
            raise ValueError(f'PreemptionHook: unknown signal {sig!r} (e.g. "SIGTERM", "SIGUSR1")')
        return signal.Signals(getattr(signal, name))
    return signal.Signals(sig)


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stops training cleanly on a preemption signal: the step in progress ends, a checkpoint of that iteration is
    written atomically by all processes together, and the process exits with status ``exit_status`` (see the
    module's docstring for the whole sequence).

    It runs after every other hook of a step (``'LOWEST'``), so the checkpoint holds what a regular checkpoint of that
    iteration would (scheduler step, EMA update); where the checkpoint hook has just saved that very iteration
    (``by_epoch=False``), that file is used and nothing is written twice. With gradient accumulation
    (``optim_wrapper.accumulative_counts``) it stops after the next step that updates the weights, since a
    checkpoint holds no accumulated gradients.

    Args:
        signals: the signals that mean "preempted" (names or numbers). SIGTERM is what slurm sends on preemption
            and torchrun forwards; SIGUSR1 is the usual choice of ``sbatch --signal=USR1@<seconds>`` before the time
            limit. SIGINT (Ctrl-C) is left alone on purpose: it stops at once.
        exit_status: the process's exit status after a preemption checkpoint.
    """

    priority = 'LOWEST'

    def __init__(self, signals: Sequence[Union[str, int]] = ('SIGTERM', 'SIGUSR1'),
                 exit_status: int = PREEMPTED_EXIT_STATUS):
        self.signals = [_signal_number(s) for s in signals]
        self.exit_status = int(exit_status)
        _prepare_worker_shield(self.signals)  # the training data's workers, forked later, outlive them
        self.received: List[signal.Signals] = []
        self._previous: Dict[signal.Signals, object] = {}
        self._pending_removal: Optional[str] = None
        self._last_seen: Optional[str] = None

    # ------------------------------------------------------------------------------------------ signal handling

    def _handle(self, signum, frame) -> None:
        # Only records: a handler runs between two bytecodes of the main thread, wherever that is (inside a save,
        # inside logging). Everything else happens at the next step boundary.
        self.received.append(signal.Signals(signum))

    def install_handlers(self) -> bool:
        """Installs the handlers (only possible in the main thread); True where they are installed."""
        if self._previous:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def restore_handlers(self) -> None:
        """Puts back the handlers that were there before :meth:`install_handlers`."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def after_run(self, runner) -> None:
        self.restore_handlers()

    # ------------------------------------------------------------------------------------------ the training run

    def before_train(self, runner) -> None:
        # Training only: a test or evaluation run (same config) keeps the default handlers and stops at a signal.
        if not self.install_handlers():
            runner.logger.warning('PreemptionHook: training does not run in the main thread, so no signal handler '
                                  'can be installed; a preemption signal will end the run without a checkpoint')
        # A run resumed from a preemption checkpoint deletes it once a later regular checkpoint is complete.
        self._pending_removal = runner.message_hub.get_info(PREEMPTION_CKPT_KEY, None) if runner.iter > 0 else None

    def after_train(self, runner) -> None:
        self.restore_handlers()
        # Training is complete: the work dir no longer holds an interrupted run.
        if is_main_process():
            marker = osp.join(runner.work_dir, PREEMPTED_MARKER)
            if osp.exists(marker):
                os.remove(marker)

    def after_train_epoch(self, runner) -> None:
        self._remove_superseded(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._remove_superseded(runner)
        wrapper = runner.optim_wrapper
        if getattr(wrapper, '_accumulative_counts', 1) > 1 and not wrapper.should_update():
            # Gradients are being accumulated (optim_wrapper.accumulative_counts): a checkpoint holds no gradients,
            # so the run stops after the step that applies them. Every process is at the same point of the cycle.
            return
        if not self._agreed(bool(self.received)):
            return
        step = runner.iter + 1
        name = self.received[0].name if self.received else 'a preemption signal (received by another process)'
        count = len(self.received)
        runner.logger.warning(f'{name} received: stopping after iteration {step} with a checkpoint of it')
        path = self._save(runner, step)
        late = self.received[count:]
        if late:
            runner.logger.warning(f'{", ".join(s.name for s in late)} received while the checkpoint was written: '
                                  'ignored (the save was completed)')
        if is_main_process():
            atomic_write(osp.join(runner.work_dir, PREEMPTED_MARKER), json.dumps(
                dict(checkpoint=path, iteration=step, epoch=runner.epoch, signal=name)).encode())
        barrier()  # no process leaves before the marker is written (a launcher may kill the others when one exits)
        runner.logger.warning(f'preempted: {path} holds iteration {step}; exiting with status {self.exit_status}, '
                              'run the same command again (no --resume needed) to continue from it')
        # The handlers stay installed: a signal from now until the process exits is recorded, not fatal.
        raise TrainingPreempted(path, step, name, self.exit_status)

    @staticmethod
    def _reduced(flag: bool, op: str) -> bool:
        """``flag`` combined over all processes: ``op='max'`` whether any has it, ``'min'`` whether all have it."""
        if get_dist_info()[1] == 1:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int32)
        all_reduce(value, op=op)
        return bool(value.item())

    def _agreed(self, flag: bool) -> bool:
        """Whether any process has ``flag`` set (every process calls this after every step)."""
        return self._reduced(flag, 'max')

    def _all(self, flag: bool) -> bool:
        """Whether every process has ``flag`` set."""
        return self._reduced(flag, 'min')

    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        return next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)

    def _save(self, runner, step: int) -> str:
        """Writes ``iter_<step>.pth`` (every process takes part: a sharded model is gathered by all of them; the main
        process writes) and returns its path; raises on every process if the save failed."""
        ckpt_hook = self._checkpoint_hook(runner)
        out_dir = str(getattr(ckpt_hook, 'out_dir', None) or runner.work_dir)
        filename = f'iter_{step}.pth'
        path = osp.join(out_dir, filename)
        already_saved = str(runner.message_hub.get_info('last_ckpt', None)) == path
        # Written at this iteration already (by the checkpoint hook, every process knows) and complete (the main
        # process checks): every process skips the save, or none does.
        if self._all(already_saved and (not is_main_process() or is_complete_checkpoint(path))):
            runner.logger.info(f'{path} was written at this iteration already')
            return path
        error = None
        try:
            self._write(runner, ckpt_hook, out_dir, filename, path, step)
        except Exception as err:  # noqa: BLE001  reported on every process below
            error = err
        if not self._all(error is None):
            if error is not None:
                raise error
            raise RuntimeError(f'the preemption checkpoint {path} could not be written (another process failed: '
                               'see the main process\'s log); training stops without it')
        return path

    def _write(self, runner, ckpt_hook, out_dir: str, filename: str, path: str, step: int) -> None:
        """Every process: the Runner's save_checkpoint (which writes on the main process only); the main process
        then points ``last_checkpoint`` at the file."""
        backend_args = getattr(ckpt_hook, 'backend_args', None)
        if not backend_args or backend_args.get('backend') in (None, 'local', 'atomic_local'):
            backend_args = dict(backend='atomic_local')
        runner.message_hub.update_info('last_ckpt', path)
        runner.message_hub.update_info(PREEMPTION_CKPT_KEY, path)
        runner.logger.info(f'Saving the preemption checkpoint at {step} iterations')
        runner.save_checkpoint(
            out_dir, filename, save_optimizer=getattr(ckpt_hook, 'save_optimizer', True),
            save_param_scheduler=getattr(ckpt_hook, 'save_param_scheduler', True),
            # The epoch in progress: a resume continues inside it (ExactResumeHook), as from a by_epoch=False
            # checkpoint of the checkpoint hook.
            meta=dict(epoch=runner.epoch, iter=step), by_epoch=False, backend_args=backend_args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), path.encode())
        # Preempted again before a regular checkpoint superseded the previous preemption checkpoint: this one does.
        old, self._pending_removal = self._pending_removal, None
        if old and old != path and osp.isfile(old):
            os.remove(old)

    def _remove_superseded(self, runner) -> None:
        """Deletes the preemption checkpoint this run resumed from once a later regular one is complete (unless the
        checkpoint hook keeps that very file)."""
        pending = self._pending_removal
        if pending is None:
            return
        last = runner.message_hub.get_info('last_ckpt', None)
        if last is None or str(last) == pending or str(last) == self._last_seen:
            return
        self._last_seen = str(last)  # each new checkpoint is looked at once
        if not is_complete_checkpoint(str(last)):
            return
        self._pending_removal = None
        runner.message_hub.update_info(PREEMPTION_CKPT_KEY, None)
        ckpt_hook = self._checkpoint_hook(runner)
        kept = set()
        if ckpt_hook is not None:
            template = getattr(ckpt_hook, 'filename_tmpl', 'iter_{}.pth')
            kept = {osp.join(str(ckpt_hook.out_dir), template.format(i))
                    for i in getattr(ckpt_hook, 'keep_ckpt_ids', [])}
        if is_main_process() and pending not in kept and osp.isfile(pending):
            os.remove(pending)
            runner.logger.info(f'removed the preemption checkpoint {pending}: {last} is newer')
