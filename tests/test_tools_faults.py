"""Faults injected into real runs of the tools (tools/pretrain.py, train_seg.py, test_seg.py, mmseg's test.py), all
slow: SIGKILL after a checkpoint and during a save, a NaN loss, a worker killed in a 2-process run, hostile
checkpoints, bad images and mismatched heads. Each run is a few iterations on the digits at 32 pixels (pretraining)
or digit scenes at 64 pixels (fine-tuning) on the CPU. The hooks that inject the faults are in fault_injection.py."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess

import pytest
import torch

import cosub_seg  # noqa: F401  (allow-lists the data classes of training checkpoints)
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.runtime import find_resumable_checkpoint

from helpers import ROOT, Hostile, digits_options, run_tool, scalars

PRETRAIN = 'configs/pretrain/cosub_deit3-tiny_digits.py'
SEG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
TESTS = osp.dirname(osp.abspath(__file__))
ENV = dict(PYTHONPATH=os.pathsep.join(p for p in (TESTS, ROOT, os.environ.get('PYTHONPATH', '')) if p))

pytestmark = pytest.mark.slow


def derived_config(tmp_path, base: str, body: str = '', name: str = 'config.py') -> str:
    """A config inheriting ``base`` that also imports the fault-injection hooks (and adds ``body``)."""
    path = tmp_path / name
    path.write_text(f'_base_ = [{osp.join(ROOT, base)!r}]\n'
                    "custom_imports = dict(imports=['cosub_seg', 'cosub_seg.runtime.installed', 'fault_injection'], "
                    "allow_failed_imports=False)\n"
                    + body)
    return str(path)


def run(args, timeout=600, env=None):
    """Runs a command that is expected to fail (a ``timeout`` expiring means it hung); returns the process."""
    full_env = dict(os.environ, **ENV)
    full_env.update(env or {})
    return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same_weights(a_path, b_path, keys=('state_dict', 'ema_state_dict')):
    a, b = load(a_path), load(b_path)
    for key in keys:
        if key not in a:
            continue
        assert a[key].keys() == b[key].keys()
        differing = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not differing, f'{key}: {len(differing)} tensors differ, e.g. {differing[:3]}'


# ---------------------------------------------------------------------------------------------- kill and resume


def pretraining_with_ema_and_killed_at_7(tmp_path):
    """The digits pretraining config with EMA, and the same killed by SIGKILL at iteration 7 (tests/test_gpu.py too)."""
    ema = "custom_hooks = [dict(type='EMAHook', momentum=0.01, update_buffers=True, priority='ABOVE_NORMAL')]\n"
    plain = derived_config(tmp_path, PRETRAIN, ema, 'plain.py')
    killed = derived_config(tmp_path, PRETRAIN, ema + 'default_hooks = dict(kill=dict(type="KillAtIterationHook", '
                            'iteration=7))\n', 'killed.py')
    return plain, killed


def test_pretraining_killed_after_a_checkpoint_resumes_to_identical_weights(digits_root, tmp_path, python):
    """Epoch-based loop, EMA, 2 persistent workers, checkpoints every 3 iterations (inside epochs): killed with
    SIGKILL at iteration 7, after iter_6.pth; resuming gives bit-identical final weights."""
    plain, killed = pretraining_with_ema_and_killed_at_7(tmp_path)
    options = digits_options(digits_root, epochs=2, per_epoch_images=16) + [
        'train_dataloader.num_workers=2', 'train_dataloader.persistent_workers=True',
        'default_hooks.checkpoint.by_epoch=False', 'default_hooks.checkpoint.interval=3',
        'default_hooks.checkpoint.max_keep_ckpts=2']
    reference, work_dir = str(tmp_path / 'reference'), str(tmp_path / 'killed')
    run_tool([python, 'tools/pretrain.py', plain, '--work-dir', reference, '--cfg-options', *options], env=ENV)
    proc = run([python, 'tools/pretrain.py', killed, '--work-dir', work_dir, '--cfg-options', *options])
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not osp.exists(osp.join(work_dir, 'iter_8.pth'))
    assert find_resumable_checkpoint(work_dir) == osp.join(work_dir, 'iter_6.pth')
    proc = run_tool([python, 'tools/pretrain.py', plain, '--work-dir', work_dir, '--resume', '--cfg-options',
                     *options], env=ENV)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 6' in log
    assert 'its first 2 batches are left out' in log  # iteration 6 is the second of 4 in epoch 2
    assert_same_weights(osp.join(reference, 'iter_8.pth'), osp.join(work_dir, 'iter_8.pth'))
    # The test can tell weights apart: the last two steps changed them.
    assert not torch.equal(load(osp.join(work_dir, 'iter_6.pth'))['state_dict']['backbone.head.weight'],
                           load(osp.join(work_dir, 'iter_8.pth'))['state_dict']['backbone.head.weight'])


def seg_options(scenes, iters=6, interval=2, pretrained=None):
    init = f'model.backbone.init_cfg.checkpoint={pretrained}' if pretrained else 'model.backbone.init_cfg=None'
    return [
        f'train_dataloader.dataset.dataset.data_root={scenes}', f'val_dataloader.dataset.data_root={scenes}',
        f'test_dataloader.dataset.data_root={scenes}',
        'train_dataloader.dataset.dataset.indices=8', 'val_dataloader.dataset.indices=1',
        init, 'model.num_submodels=2',  # cosub: two stochastic-depth submodels per crop
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}', f'train_cfg.val_begin={iters + 1}',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        f'default_hooks.checkpoint.interval={interval}', 'default_hooks.checkpoint.max_keep_ckpts=2',
        'default_hooks.logger.interval=1', 'param_scheduler.0.end=2', 'param_scheduler.0.start_factor=0.5',
        'param_scheduler.1.begin=2', f'param_scheduler.1.end={iters}', 'randomness.deterministic=True',
        'randomness.seed=5',
    ]


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('scenes'))
    write_digit_scenes(root, num_train=8, num_val=1)
    return root


def test_fine_tuning_killed_after_a_checkpoint_resumes_to_identical_weights(scenes, tmp_path, python):
    """IterBasedTrainLoop with cosub fine-tuning (drop path) and a worker: killed at iteration 3, after iter_2.pth;
    resuming gives bit-identical final weights."""
    plain = derived_config(tmp_path, SEG, name='plain.py')
    killed = derived_config(tmp_path, SEG, 'default_hooks = dict(kill=dict(type="KillAtIterationHook", '
                            'iteration=3))\n', 'killed.py')
    options = seg_options(scenes)
    reference, work_dir = str(tmp_path / 'reference'), str(tmp_path / 'killed')
    run_tool([python, 'tools/train_seg.py', plain, '--work-dir', reference, '--cfg-options', *options], env=ENV)
    proc = run([python, 'tools/train_seg.py', killed, '--work-dir', work_dir, '--cfg-options', *options])
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth'))) == ['iter_2.pth']
    proc = run_tool([python, 'tools/train_seg.py', plain, '--work-dir', work_dir, '--resume', '--cfg-options',
                     *options], env=ENV)
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert_same_weights(osp.join(reference, 'iter_6.pth'), osp.join(work_dir, 'iter_6.pth'))


def test_kill_during_a_save_leaves_the_previous_checkpoint_usable(digits_root, tmp_path, python):
    """max_keep_ckpts=1: MMEngine's hook would delete epoch_1.pth before writing epoch_2.pth. Killed while epoch_2.pth
    is being written: epoch_1.pth is intact, last_checkpoint names it, and resuming ends as an uninterrupted run."""
    plain = derived_config(tmp_path, PRETRAIN, name='plain.py')
    killed = derived_config(tmp_path, PRETRAIN, 'default_hooks = dict(kill=dict(type="KillDuringSaveHook", '
                            'iteration=4))\n', 'killed.py')
    options = digits_options(digits_root, epochs=3) + ['default_hooks.checkpoint.max_keep_ckpts=1']
    reference, work_dir = str(tmp_path / 'reference'), str(tmp_path / 'killed')
    run_tool([python, 'tools/pretrain.py', plain, '--work-dir', reference, '--cfg-options', *options], env=ENV)
    proc = run([python, 'tools/pretrain.py', killed, '--work-dir', work_dir, '--cfg-options', *options])
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    partial = glob.glob(osp.join(work_dir, '.epoch_2.pth.*.partial'))
    assert len(partial) == 1  # the kill came in the middle of the save
    previous = load(osp.join(work_dir, 'epoch_1.pth'))
    assert previous['meta']['iter'] == 2 and 'optimizer' in previous
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work_dir, 'epoch_1.pth')
    proc = run_tool([python, 'tools/pretrain.py', plain, '--work-dir', work_dir, '--resume', '--cfg-options',
                     *options], env=ENV)
    assert 'resumed epoch: 1, iter: 2' in proc.stdout + proc.stderr
    assert not glob.glob(osp.join(work_dir, '.*.partial'))
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(work_dir, 'epoch_*.pth'))) == ['epoch_3.pth']
    assert_same_weights(osp.join(reference, 'epoch_3.pth'), osp.join(work_dir, 'epoch_3.pth'))


# ---------------------------------------------------------------------------------------------- numerical faults


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(digits_root, tmp_path, python):
    config = derived_config(tmp_path, PRETRAIN, 'default_hooks = dict(nan=dict(type="NonFiniteWeightsHook", '
                            'iteration=3))\n')
    work_dir = str(tmp_path / 'run')
    options = digits_options(digits_root, epochs=3) + ['default_hooks.checkpoint.max_keep_ckpts=1']
    proc = run([python, 'tools/pretrain.py', config, '--work-dir', work_dir, '--cfg-options', *options])
    assert proc.returncode == 1
    message = [line for line in proc.stderr.splitlines() if line.startswith('FloatingPointError')]
    assert message, proc.stderr[-3000:]
    assert 'non-finite loss at iteration 3 (epoch 2)' in message[0]
    assert 'loss=nan' in message[0] and 'loss_label=nan' in message[0] and 'loss_peer=' in message[0]
    assert osp.join(work_dir, 'epoch_1.pth') in message[0]
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth'))) == [
        'best_accuracy_top1_epoch_1.pth', 'epoch_1.pth']
    good = load(osp.join(work_dir, 'epoch_1.pth'))
    assert good['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in good['state_dict'].values())


# ---------------------------------------------------------------------------------------------- distributed


def test_two_processes_follow_one_process_and_survive_a_killed_worker(digits_root, tmp_path, python):
    """The same global batch (8) and seed on 1 process and on 2 (gloo, CPU) give the same loss curve; a worker killed
    with SIGKILL makes torchrun exit non-zero without hanging, and the job resumes to the weights of an uninterrupted
    2-process run.

    Tolerance: with stochastic depth off and no co-training (k = 1) both runs see the same samples with the same
    augmentation (ReproducibleSampler seeds by global position) and compute the same mean gradient, summed in another
    order (two halves of 4, then DDP's average, instead of 8 at once): float32 rounding, about 6e-8 relative per
    operation, which later steps can amplify (AdamW divides by the gradient's magnitude). Measured on this test:
    losses within 5e-8 relative, weights within 1.2e-7 after 4 steps. We allow 1e-5 on both, about 100 times that and
    1,000 times below the change of the loss from one step to the next (~1e-2), which a real difference (another
    sample order, another augmentation, a wrong gradient average) would show up at.
    """
    config = derived_config(tmp_path, PRETRAIN, 'env_cfg = dict(dist_cfg=dict(timeout=60))\n', 'plain.py')
    killed = derived_config(tmp_path, PRETRAIN, 'env_cfg = dict(dist_cfg=dict(timeout=60))\n'
                            'default_hooks = dict(kill=dict(type="KillAtIterationHook", iteration=3, rank=1))\n',
                            'killed.py')
    # The recipe's warm-up (5 epochs at lr 5e-4) would leave 4 steps almost still: a 2-epoch warm-up to 1e-3 makes
    # the curve move, so that its equality across process counts means something.
    common = digits_options(digits_root, epochs=2, per_epoch_images=16) + [
        'model.num_submodels=1', 'model.drop_path_rate=0.0', 'optim_wrapper.optimizer.lr=1e-3',
        'param_scheduler.0.end=2', 'param_scheduler.1.begin=2']
    single, double, work_dir = (str(tmp_path / name) for name in ('single', 'double', 'killed'))
    run_tool([python, 'tools/pretrain.py', config, '--work-dir', single, '--cfg-options', *common,
              'train_dataloader.batch_size=8'], env=ENV)
    dist_env = dict(ENV, PYTHON=python)
    run_tool(['bash', 'tools/dist_pretrain.sh', config, '2', '--work-dir', double, '--cfg-options', *common],
             env=dict(dist_env, PORT='29531'))
    one = [r for r in scalars(single) if 'loss' in r]
    two = [r for r in scalars(double) if 'loss' in r]
    assert [r['iter'] for r in one] == [r['iter'] for r in two] == [1, 2, 3, 4]
    assert one[-1]['loss'] < one[0]['loss'] - 1e-3  # the curve moves: equality is not trivial
    for a, b in zip(one, two):
        assert b['loss'] == pytest.approx(a['loss'], rel=1e-5)
    w1, w2 = load(osp.join(single, 'epoch_2.pth'))['state_dict'], load(osp.join(double, 'epoch_2.pth'))['state_dict']
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5

    proc = run(['bash', 'tools/dist_pretrain.sh', killed, '2', '--work-dir', work_dir, '--cfg-options', *common],
               timeout=300, env=dict(dist_env, PORT='29532'))
    assert proc.returncode != 0
    assert 'Signal 9 (SIGKILL) received by PID' in proc.stderr  # torchrun's root cause: the killed worker
    assert 'epoch_1.pth' in os.listdir(work_dir) and 'epoch_2.pth' not in os.listdir(work_dir)
    proc = run_tool(['bash', 'tools/dist_pretrain.sh', config, '2', '--work-dir', work_dir, '--resume',
                     '--cfg-options', *common], env=dict(dist_env, PORT='29533'))
    assert 'resumed epoch: 1, iter: 2' in proc.stdout + proc.stderr
    assert_same_weights(osp.join(double, 'epoch_2.pth'), osp.join(work_dir, 'epoch_2.pth'))


# ---------------------------------------------------------------------------------------------- hostile files


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / 'created_by_unpickling'
    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': {'iter': 1}, 'payload': Hostile(str(marker))}, path)
    return str(path), marker


@pytest.mark.parametrize('entry', ['pretrain --resume', 'train_seg init_cfg', 'mmseg test.py'])
def test_every_tool_refuses_a_hostile_checkpoint(entry, hostile, digits_root, scenes, tmp_path, python):
    """Even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (which turns weights_only off where a caller leaves it unset).
    The three entries cover the two loaders: MMEngine's (resume, load_from and tools/test_seg.py go through the same
    call as mmseg's test.py; test_runtime_patches.py calls it directly) and TimmSegBackbone's init_cfg."""
    import mmseg
    path, marker = hostile
    work_dir = str(tmp_path / 'run')
    pretrain = [python, 'tools/pretrain.py', PRETRAIN, '--work-dir', work_dir, '--cfg-options',
                *digits_options(digits_root, epochs=1)]
    seg = seg_options(scenes)
    data = seg[:3]
    commands = {
        'pretrain --resume': pretrain[:5] + ['--resume', path] + pretrain[5:],
        'train_seg init_cfg': [python, 'tools/train_seg.py', SEG, '--work-dir', work_dir, '--cfg-options',
                               *seg_options(scenes, pretrained=path)],
        'mmseg test.py': [python, osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py'), SEG, path,
                          '--work-dir', work_dir, '--cfg-options', *data],
    }
    proc = run(commands[entry], env=dict(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1'))
    assert proc.returncode != 0
    assert 'holds more than tensors and is refused' in proc.stderr, proc.stderr[-3000:]
    assert 'Unsupported global: GLOBAL io.open' in proc.stderr  # what it would have called is named
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- bad data


def test_a_corrupt_training_image_is_skipped_and_counted(digits_root, tmp_path, python):
    """With on_bad_sample='skip' (the default, 'raise', is tested in test_runtime_checked_data.py)."""
    data = tmp_path / 'digits'
    shutil.copytree(digits_root, data)
    first = sorted(glob.glob(str(data / 'train' / '0' / '*.png')))[0]
    with open(first, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + bytes(40))  # a PNG signature and nothing readable
    proc = run_tool([python, 'tools/pretrain.py', PRETRAIN, '--work-dir', str(tmp_path / 'skip'), '--cfg-options',
                     *digits_options(str(data), epochs=2), 'train_dataloader.dataset.on_bad_sample=skip'], env=ENV)
    log = proc.stdout + proc.stderr
    # Once an epoch, two epochs: the log names the file each time and counts 2 in all.
    named = re.findall(r'iteration (\d+): skipped bad training sample index 0, img_path=' + re.escape(first), log)
    counts = re.findall(r'(\d+) bad training samples skipped at iteration (\d+), (\d+) in all', log)
    assert [(n, total) for n, _, total in counts] == [('1', '1'), ('1', '2')]
    assert named == [it for _, it, _ in counts]
    assert int(named[0]) <= 2 < int(named[1])  # one in each epoch of 2 iterations
    assert load(osp.join(tmp_path, 'skip', 'epoch_2.pth'))['message_hub']['runtime_info']['skipped_bad_samples'] == 2


def test_evaluating_a_checkpoint_trained_for_other_classes_names_both_counts(scenes, tmp_path, python):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, SEG))
    cfg.model.backbone.init_cfg = None
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.norm_cfg = dict(type='BN', requires_grad=True)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    path = str(tmp_path / 'eleven_classes.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    proc = run([python, 'tools/test_seg.py', SEG, path, '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                *seg_options(scenes)[:3], 'model.decode_head.num_classes=12', 'model.auxiliary_head.num_classes=12'])
    assert proc.returncode == 1
    assert 'decode_head.conv_seg.weight: (11, 64, 1, 1) in the checkpoint, (12, 64, 1, 1) in the model' in proc.stderr
    assert 'trained for 11 classes and the config has 12' in proc.stderr

