"""cosub_seg/runtime/preemption.py (PreemptionHook, the preempted-run marker), its use in runtime/launch.py (resume
without --resume) and tools/slurm_launch.sh (requeue on exit status 75). Fast: a toy MMEngine run signalled from
inside (the checkpoint of the signalled step equals a regular one, a second signal during the save, another process's
signal, a failed save), the auto-resume of config_from_args and the launcher with a fake srun. Slow: real SIGTERMs from
outside to tools/pretrain.py, on one process and on a 2-process torchrun; the resumed runs end bit-identical to
uninterrupted ones."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import mmengine.dist.utils
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.runtime import preemption
from cosub_seg.runtime.checkpointing import find_resumable_checkpoint, is_complete_checkpoint
from cosub_seg.runtime.preemption import (PREEMPTED_EXIT_STATUS, PREEMPTED_MARKER, PreemptionHook, TrainingPreempted,
                                          preempted_marker)

from helpers import ROOT, digits_options, toy_runner


@HOOKS.register_module()
class SignalAtIterationHook(Hook):
    """Sends ``sig`` to this process before training iteration ``iteration`` (1-based)."""

    def __init__(self, iteration: int, sig: int = signal.SIGTERM):
        self.iteration = iteration
        self.sig = sig

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), self.sig)


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def preempted_hook(runner) -> PreemptionHook:
    return next(h for h in runner.hooks if isinstance(h, PreemptionHook))


@pytest.fixture
def handlers_restored():
    """Signal handlers as they were before the test (a preempted run leaves its handler installed until exit)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def toy_checkpoints(**checkpoint):
    return dict(checkpoint=dict(dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=1), **checkpoint))


def test_a_signal_stops_after_its_step_with_the_checkpoint_a_regular_save_would_write(tmp_path, handlers_restored):
    """SIGTERM before iteration 6 of a 3-epoch run of 4 iterations per epoch: iteration 6 (inside epoch 2) ends,
    iter_6.pth is complete, holds what the checkpoint hook writes at that iteration with by_epoch=False (weights,
    optimiser, schedulers, meta.epoch = the epoch in progress), last_checkpoint and the marker name it, and the
    run raises TrainingPreempted (a SystemExit with status 75)."""
    torch.manual_seed(0)  # the toy model is built before the Runner seeds anything
    runner = toy_runner(tmp_path / 'preempted', dataset_size=8, hooks=dict(
        **toy_checkpoints(), preemption=dict(type='PreemptionHook'),
        signal=dict(type='SignalAtIterationHook', iteration=6)))
    with pytest.raises(TrainingPreempted) as stopped:
        runner.train()
    assert isinstance(stopped.value, SystemExit) and stopped.value.code == PREEMPTED_EXIT_STATUS == 75
    work_dir = runner.work_dir
    path = osp.join(work_dir, 'iter_6.pth')
    assert stopped.value.checkpoint == path and stopped.value.iteration == 6 and stopped.value.signal_name == 'SIGTERM'
    assert is_complete_checkpoint(path)
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) == ['epoch_1.pth', 'iter_6.pth']
    assert not [f for f in os.listdir(work_dir) if f.endswith('.partial')]
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == path
    assert find_resumable_checkpoint(work_dir) == path
    assert preempted_marker(work_dir) == dict(checkpoint=path, iteration=6, epoch=1, signal='SIGTERM')
    # A signal now (until the process exits) is recorded, not fatal.
    assert signal.getsignal(signal.SIGTERM) == preempted_hook(runner)._handle

    # The same run with the checkpoint hook saving iteration 6 (by_epoch=False): the same content.
    torch.manual_seed(0)
    regular = toy_runner(tmp_path / 'regular', dataset_size=8, hooks=toy_checkpoints(by_epoch=False, interval=6,
                                                                                       max_keep_ckpts=2))
    regular.train()
    a, b = load(path), load(osp.join(regular.work_dir, 'iter_6.pth'))
    assert (a['meta']['epoch'], a['meta']['iter']) == (b['meta']['epoch'], b['meta']['iter']) == (1, 6)
    torch.testing.assert_close(a['state_dict'], b['state_dict'], rtol=0, atol=0)
    torch.testing.assert_close(a['optimizer'], b['optimizer'], rtol=0, atol=0)
    assert a.get('param_schedulers') == b.get('param_schedulers')  # the toy has none; the slow tests' runs do
    assert not torch.equal(a['state_dict']['linear.weight'], load(osp.join(work_dir, 'epoch_1.pth'))[
        'state_dict']['linear.weight'])  # the two steps after epoch 1 are in it

    # Resumed from it (as the tools do where the marker is), the run finishes, removes the marker and, once a
    # regular checkpoint is newer, the preemption checkpoint. (That the resumed run is exact is the slow tests'
    # part: the toy has no ReproducibleSampler, so MMEngine restarts epoch 2 from its first batch.)
    resumed = toy_runner(tmp_path / 'preempted', dataset_size=8, hooks=dict(
        **toy_checkpoints(), preemption=dict(type='PreemptionHook')), resume=True, load_from=path)
    resumed.train()
    assert not osp.exists(osp.join(work_dir, PREEMPTED_MARKER))
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) == ['epoch_3.pth']
    assert signal.getsignal(signal.SIGTERM) != preempted_hook(resumed)._handle  # restored after training


def test_a_second_signal_during_the_save_is_recorded_and_the_checkpoint_completes(tmp_path, monkeypatch,
                                                                                   handlers_restored):
    """SIGUSR1 at iteration 3, then a SIGTERM and another SIGUSR1 while the checkpoint's bytes are on disk under the
    temporary name, just before the rename: both are recorded and logged as ignored; the file is complete and
    nothing partial is left."""
    real_replace = os.replace
    sent = []

    def replace_with_signals(src, dst):
        if dst.endswith('iter_3.pth') and not sent:
            assert osp.getsize(src) > 0
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                os.kill(os.getpid(), sig)
                sent.append(sig)
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', replace_with_signals)
    runner = toy_runner(tmp_path, dataset_size=8, hooks=dict(
        **toy_checkpoints(), preemption=dict(type='PreemptionHook'),
        signal=dict(type='SignalAtIterationHook', iteration=3, sig=signal.SIGUSR1)))
    with pytest.raises(TrainingPreempted) as stopped:
        runner.train()
    assert stopped.value.code == 75 and stopped.value.signal_name == 'SIGUSR1'
    assert sent == [signal.SIGTERM, signal.SIGUSR1]
    assert preempted_hook(runner).received == [signal.SIGUSR1, signal.SIGTERM, signal.SIGUSR1]
    path = osp.join(runner.work_dir, 'iter_3.pth')
    assert is_complete_checkpoint(path) and load(path)['meta']['iter'] == 3
    assert not [f for f in os.listdir(runner.work_dir) if f.endswith('.partial')]
    log = open(next(osp.join(r, f) for r, _, fs in os.walk(runner.work_dir) for f in fs if f.endswith('.log'))).read()
    assert 'SIGTERM, SIGUSR1 received while the checkpoint was written: ignored (the save was completed)' in log


def test_with_gradient_accumulation_the_run_stops_after_the_step_that_applies_the_gradients(tmp_path,
                                                                                            handlers_restored):
    """accumulative_counts=2 and SIGTERM before iteration 3: iteration 3 only accumulates gradients, which no
    checkpoint holds, so the run stops after iteration 4."""
    runner = toy_runner(tmp_path, dataset_size=8, optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01),
                                                                     accumulative_counts=2),
                        hooks=dict(**toy_checkpoints(), preemption=dict(type='PreemptionHook'),
                                   signal=dict(type='SignalAtIterationHook', iteration=3)))
    with pytest.raises(TrainingPreempted) as stopped:
        runner.train()
    assert stopped.value.iteration == 4 and load(stopped.value.checkpoint)['meta']['iter'] == 4


def iter_based_runner(tmp_path, hooks, max_iters=6, **kwargs):
    """The toy run in an IterBasedTrainLoop (the segmentation recipes' loop)."""
    from mmengine.runner import Runner
    from helpers import ToyModel
    torch.manual_seed(0)
    return Runner(
        model=ToyModel(), work_dir=str(tmp_path / 'run'), experiment_name=f'iter-{tmp_path.name}',
        train_dataloader=dict(dataset=[dict(inputs=torch.tensor([1.0, float(i)])) for i in range(4)],
                              sampler=dict(type='InfiniteSampler', shuffle=False), batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=max_iters),
        train_cfg=dict(by_epoch=False, max_iters=max_iters), default_scope='mmengine', randomness=dict(seed=0),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1), **hooks), **kwargs)


def test_in_an_iteration_based_loop_the_checkpoint_equals_the_regular_one(tmp_path, handlers_restored):
    runner = iter_based_runner(tmp_path / 'preempted', dict(
        **toy_checkpoints(by_epoch=False, interval=100), preemption=dict(type='PreemptionHook'),
        signal=dict(type='SignalAtIterationHook', iteration=3)))
    with pytest.raises(TrainingPreempted) as stopped:
        runner.train()
    regular = iter_based_runner(tmp_path / 'regular', toy_checkpoints(by_epoch=False, interval=3, max_keep_ckpts=2))
    regular.train()
    a, b = load(stopped.value.checkpoint), load(osp.join(regular.work_dir, 'iter_3.pth'))
    assert (a['meta']['epoch'], a['meta']['iter']) == (b['meta']['epoch'], b['meta']['iter']) == (0, 3)
    torch.testing.assert_close(a['state_dict'], b['state_dict'], rtol=0, atol=0)
    torch.testing.assert_close(a['optimizer'], b['optimizer'], rtol=0, atol=0)
    assert a['param_schedulers'] == b['param_schedulers']


def test_a_signal_another_process_got_stops_this_one_at_the_same_step(tmp_path, monkeypatch, handlers_restored):
    """Rank 1 of 2 received nothing, rank 0 did: the all-reduce (max) says so after the step, and rank 1 stops at the
    same iteration; it writes nothing (rank 0 writes) and leaves with the same status."""
    reduced = []

    def all_reduce(value, op='sum'):
        reduced.append(op)
        if op == 'max':
            value.fill_(1)  # rank 0's flag
    monkeypatch.setattr(preemption, 'get_dist_info', lambda: (1, 2))
    monkeypatch.setattr(preemption, 'is_main_process', lambda: False)
    monkeypatch.setattr(preemption, 'all_reduce', all_reduce)
    runner = toy_runner(tmp_path, dataset_size=8,
                        hooks=dict(**toy_checkpoints(), preemption=dict(type='PreemptionHook')))
    # Every process calls the Runner's save_checkpoint (a sharded model is gathered by all); @master_only makes it a
    # no-op on this one.
    monkeypatch.setattr(mmengine.dist.utils, 'is_main_process', lambda: False)
    with pytest.raises(TrainingPreempted) as stopped:
        runner.train()
    assert stopped.value.iteration == 1 and stopped.value.code == 75
    assert 'another process' in stopped.value.signal_name
    # The flag after the step, whether every process found the checkpoint written already, whether the save succeeded.
    assert reduced == ['max', 'min', 'min']
    assert not [f for f in os.listdir(runner.work_dir) if f.endswith('.pth') or f == PREEMPTED_MARKER]


def test_a_failed_save_stops_every_process_without_a_marker(tmp_path, monkeypatch, handlers_restored):
    runner = toy_runner(tmp_path, dataset_size=8, hooks=dict(
        **toy_checkpoints(), preemption=dict(type='PreemptionHook'), signal=dict(type='SignalAtIterationHook',
                                                                                 iteration=2)))

    def full_disk(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(runner, 'save_checkpoint', full_disk)
    with pytest.raises(OSError, match='No space left'):
        runner.train()
    assert not osp.exists(osp.join(runner.work_dir, PREEMPTED_MARKER))
    # Another rank learns it from the all-reduce (min) and stops too.
    monkeypatch.setattr(preemption, 'get_dist_info', lambda: (1, 2))
    monkeypatch.setattr(preemption, 'is_main_process', lambda: False)
    monkeypatch.setattr(preemption, 'all_reduce', lambda value, op='sum': value.fill_(1 if op == 'max' else 0))
    other = toy_runner(tmp_path / 'rank1', dataset_size=8, hooks=dict(**toy_checkpoints(),
                                                                     preemption=dict(type='PreemptionHook')))
    with pytest.raises(RuntimeError, match='could not be written'):
        other.train()


def test_a_finished_run_restores_the_handlers_and_leaves_no_marker(tmp_path, handlers_restored):
    before = signal.getsignal(signal.SIGTERM)
    runner = toy_runner(tmp_path, epochs=1, hooks=dict(**toy_checkpoints(), preemption=dict(type='PreemptionHook')))
    (tmp_path / 'run').mkdir(exist_ok=True)
    (tmp_path / 'run' / PREEMPTED_MARKER).write_text('{}')  # an earlier preempted run of this work dir, now finished
    runner.train()
    assert signal.getsignal(signal.SIGTERM) == before
    assert not osp.exists(osp.join(runner.work_dir, PREEMPTED_MARKER))
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        PreemptionHook(signals=['SIGNOPE'])
    assert PreemptionHook(signals=['usr1', 15]).signals == [signal.SIGUSR1, signal.SIGTERM]


class WorkerPids(torch.utils.data.Dataset):
    """Each sample is the pid of the process that loaded it, after shield_data_worker (as in CheckedDataset)."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        preemption.shield_data_worker()
        return os.getpid()


@pytest.mark.parametrize('shielded', [True, False])
def test_data_loader_workers_outlive_the_signal_slurm_sends_every_process(monkeypatch, shielded):
    """A SIGTERM and a SIGUSR1 sent to a data-loader worker (slurm signals every process of a job step): with a
    PreemptionHook built (its signals recorded for the workers) the worker ignores them and serves every sample;
    without, torch's handler ends the worker and the main process fails at its next batch."""
    if shielded:
        PreemptionHook()
    else:
        monkeypatch.setattr(preemption, '_worker_signals', ())
    loader = torch.utils.data.DataLoader(WorkerPids(), batch_size=1, num_workers=1, multiprocessing_context='fork')
    batches = iter(loader)
    pid = int(next(batches))
    assert pid != os.getpid()
    if not shielded:  # torch's SIGCHLD handler raises in the main thread, wherever it is
        with pytest.raises(RuntimeError, match='DataLoader worker .* exited unexpectedly|killed by signal'):
            os.kill(pid, signal.SIGTERM)
            time.sleep(0.5)
            list(batches)
        return
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGUSR1)
    time.sleep(0.5)
    assert [int(b) for b in batches] == [pid] * 11
    # Once the main process exits (its exit flag set), a SIGTERM ends the worker, as multiprocessing's exit needs.
    batches = iter(loader)
    pid = int(next(batches))
    monkeypatch.setattr(preemption._main_exiting, 'value', 1)
    os.kill(pid, signal.SIGTERM)
    worker = batches._workers[0]
    worker.join(timeout=10)
    assert worker.exitcode == 0
    del batches


def test_the_tools_resume_a_preempted_work_dir_without_resume(tmp_path):
    """config_from_args: with the marker, the newest complete checkpoint is resumed without --resume; without it
    nothing is resumed; an explicit --resume CHECKPOINT wins over the marker."""
    import argparse
    from cosub_seg.runtime.launch import add_train_args, config_from_args
    config = osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py')
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    for name, it in (('epoch_1.pth', 4), ('iter_6.pth', 6)):
        torch.save(dict(meta=dict(epoch=1, iter=it), state_dict={}, optimizer={}), str(work_dir / name))

    def parse(*extra):
        return config_from_args(add_train_args(argparse.ArgumentParser()).parse_args(
            [config, '--work-dir', str(work_dir), *extra]))
    cfg = parse()
    assert not cfg.resume and cfg.load_from is None
    (work_dir / PREEMPTED_MARKER).write_text(json.dumps(dict(checkpoint=str(work_dir / 'iter_6.pth'), iteration=6)))
    cfg = parse()
    assert cfg.resume and cfg.load_from == str(work_dir / 'iter_6.pth')
    cfg = parse('--resume', str(work_dir / 'epoch_1.pth'))
    assert cfg.resume and cfg.load_from == str(work_dir / 'epoch_1.pth')


def fake_slurm(tmp_path, srun_status):
    """PATH with an srun that exits with ``srun_status`` and an scontrol that records its arguments."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(f'#!/bin/sh\nexit {srun_status}\n')
    (bin_dir / 'scontrol').write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    for name in ('srun', 'scontrol'):
        (bin_dir / name).chmod(0o755)
    return dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', PYTHON=sys.executable)


@pytest.mark.parametrize('status, job_id, requeued', [(75, '4242', True), (75, None, False), (0, '4242', False),
                                                     (1, '4242', False)])
def test_the_slurm_launcher_requeues_a_preempted_job(tmp_path, status, job_id, requeued):
    env = fake_slurm(tmp_path, status)
    env.pop('SLURM_JOB_ID', None)
    if job_id:
        env['SLURM_JOB_ID'] = job_id
    proc = subprocess.run(['bash', 'tools/slurm_pretrain.sh', 'part', 'job', 'CONFIG'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == status
    log = tmp_path / 'scontrol.log'
    assert (log.read_text() if log.exists() else '') == ('requeue 4242\n' if requeued else '')
    if status == 75:
        assert 'preempted (exit status 75)' in proc.stderr


# ---------------------------------------------------------------------------------------------- real runs, slow

PRETRAIN = 'configs/pretrain/cosub_deit3-tiny_digits.py'
TESTS = osp.dirname(osp.abspath(__file__))
ENV = dict(PYTHONPATH=os.pathsep.join(p for p in (TESTS, ROOT, os.environ.get('PYTHONPATH', '')) if p))
EMA = "custom_hooks = [dict(type='EMAHook', momentum=0.01, update_buffers=True, priority='ABOVE_NORMAL')]\n"


def derived_config(tmp_path, name: str, body: str = '') -> str:
    """The digits pretraining config with EMA, importing the test hooks of fault_injection.py (and adding ``body``)."""
    path = tmp_path / name
    path.write_text(f'_base_ = [{osp.join(ROOT, PRETRAIN)!r}]\n'
                    "custom_imports = dict(imports=['cosub_seg', 'cosub_seg.runtime.installed', 'fault_injection'], "
                    "allow_failed_imports=False)\n" + EMA + body)
    return str(path)


def start(args, env=None):
    """Starts a tool in a session (process group) of its own, as slurm starts a task."""
    return subprocess.Popen(args, cwd=ROOT, env=dict(os.environ, **ENV, **(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc, timeout=300):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, out + err


def signal_when_ready(proc, ready_dir, ranks, sig=signal.SIGTERM, group=False, timeout=300):
    """Sends ``sig`` to ``proc`` (with ``group``, to every process of its group, as slurm signals every process
    of a job step) once every rank waits in PauseForSignalHook."""
    deadline = time.monotonic() + timeout
    while not all(osp.exists(osp.join(ready_dir, f'ready.{rank}')) for rank in range(ranks)):
        if proc.poll() is not None or time.monotonic() > deadline:
            code, log = finish(proc)
            raise AssertionError(f'the run never reached the pause ({code}):\n{log[-6000:]}')
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)


def assert_same_weights(a_path, b_path):
    a, b = load(a_path), load(b_path)
    for key in ('state_dict', 'ema_state_dict'):
        assert key in a and a[key].keys() == b[key].keys()
        differing = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not differing, f'{key}: {len(differing)} tensors differ, e.g. {differing[:3]}'


@pytest.mark.slow
def test_sigterm_mid_epoch_then_the_same_command_resumes_to_identical_weights(digits_root, tmp_path):
    """tools/pretrain.py, one process with 2 persistent data-loader workers, 2 epochs of 2 iterations: SIGTERM from
    outside to all of them, as slurm signals a task, while iteration 3 (the first of epoch 2) is about to run, and a
    second SIGTERM during the checkpoint's save. The workers outlive the signal; the run ends iteration 3, writes a
    complete iter_3.pth and exits with status 75; the same command again (no --resume) resumes from it and ends
    with weights and EMA weights bit-identical to an uninterrupted run's."""
    ready = tmp_path / 'ready'
    ready.mkdir()
    plain = derived_config(tmp_path, 'plain.py')
    preempted = derived_config(tmp_path, 'preempted.py', 'default_hooks = dict(pause=dict(type="PauseForSignalHook", '
                               f'iteration=3, ready_dir={str(ready)!r}), during_save=dict(type="SignalDuringSaveHook", '
                               'iteration=3))\n')
    options = ['--cfg-options', *digits_options(digits_root, epochs=2), 'train_dataloader.num_workers=2',
               'train_dataloader.persistent_workers=True']
    reference, work_dir = str(tmp_path / 'reference'), str(tmp_path / 'preempted')
    command = [sys.executable, 'tools/pretrain.py', preempted, '--work-dir', work_dir, *options]
    run = start(command)
    code, log = finish(start([sys.executable, 'tools/pretrain.py', plain, '--work-dir', reference, *options]))
    assert code == 0, log[-6000:]
    signal_when_ready(run, str(ready), ranks=1, group=True)
    code, log = finish(run)
    assert code == PREEMPTED_EXIT_STATUS, log[-6000:]
    assert 'SIGTERM received: stopping after iteration 3' in log
    assert 'SIGTERM received while the checkpoint was written: ignored' in log
    path = osp.join(work_dir, 'iter_3.pth')
    assert is_complete_checkpoint(path) and load(path)['meta']['iter'] == 3 and 'optimizer' in load(path)
    assert not [f for f in os.listdir(work_dir) if f.endswith('.partial')]
    assert find_resumable_checkpoint(work_dir) == path and preempted_marker(work_dir)['iteration'] == 3

    head = load(path)['state_dict']['backbone.head.weight']
    code, log = finish(start(command))  # the requeued job: the same command
    assert code == 0, log[-6000:]
    assert 'holds a preempted run (iteration 3, SIGTERM): resuming' in log
    assert 'resumed epoch: 1, iter: 3' in log and 'its first 1 batches are left out' in log
    assert_same_weights(osp.join(reference, 'epoch_2.pth'), osp.join(work_dir, 'epoch_2.pth'))
    assert not torch.equal(head, load(osp.join(work_dir, 'epoch_2.pth'))['state_dict']['backbone.head.weight'])
    assert not osp.exists(osp.join(work_dir, PREEMPTED_MARKER)) and not osp.exists(path)


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_both_processes_at_one_iteration_and_resumes_exactly(digits_root, tmp_path):
    """tools/dist_pretrain.sh, 2 gloo processes, 2 epochs of 2 iterations: SIGTERM to torchrun (which forwards it to
    both workers) while iteration 2, the last of epoch 1, is about to run. Both processes stop after it, with one
    complete iter_2.pth; the same command again resumes in epoch 1 with nothing left of it (its validation and
    epoch_1.pth come then) and ends bit-identical to an uninterrupted 2-process run."""
    ready = tmp_path / 'ready'
    ready.mkdir()
    plain = derived_config(tmp_path, 'plain.py', 'env_cfg = dict(dist_cfg=dict(timeout=60))\n')
    preempted = derived_config(tmp_path, 'preempted.py', 'env_cfg = dict(dist_cfg=dict(timeout=60))\n'
                               'default_hooks = dict(pause=dict(type="PauseForSignalHook", '
                               f'iteration=2, ready_dir={str(ready)!r}))\n')
    options = ['--cfg-options', *digits_options(digits_root, epochs=2, per_epoch_images=16)]
    reference, work_dir = str(tmp_path / 'reference'), str(tmp_path / 'preempted')
    env = dict(PYTHON=sys.executable)
    command = ['bash', 'tools/dist_pretrain.sh', preempted, '2', '--work-dir', work_dir, *options]
    run = start(command, env=dict(env, PORT='29551'))
    code, log = finish(start(['bash', 'tools/dist_pretrain.sh', plain, '2', '--work-dir', reference, *options],
                             env=dict(env, PORT='29552')))
    assert code == 0, log[-6000:]
    signal_when_ready(run, str(ready), ranks=2)
    code, log = finish(run)
    assert code != 0, log[-6000:]  # torchrun's own status; each worker's is 75
    assert 'SIGTERM received: stopping after iteration 2' in log
    path = osp.join(work_dir, 'iter_2.pth')
    assert is_complete_checkpoint(path) and load(path)['meta']['iter'] == 2
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) == ['iter_2.pth']
    assert preempted_marker(work_dir)['iteration'] == 2

    code, log = finish(start(command, env=dict(env, PORT='29553')))
    assert code == 0, log[-6000:]
    assert 'resumed epoch: 0, iter: 2' in log
    assert_same_weights(osp.join(reference, 'epoch_2.pth'), osp.join(work_dir, 'epoch_2.pth'))
    assert_same_weights(osp.join(reference, 'epoch_1.pth'), osp.join(work_dir, 'epoch_1.pth'))
    assert not osp.exists(osp.join(work_dir, PREEMPTED_MARKER)) and not osp.exists(path)
