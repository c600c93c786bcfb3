"""cosub_seg/runtime/console.py: logs a person can read. The console gets one line where MMEngine prints the
environment, the config and the hook order (the log file keeps them), no per-parameter optimiser lines, no
confusion matrix as a wrapped array; the slow tests count the console lines of a tiny fine-tuning and look for the
parameter-group summary of a pretraining."""
import logging
import os.path as osp
import re
import subprocess

import numpy as np
import pytest
import torch

from cosub_seg.runtime.console import CompactLogProcessor, ConsoleSummaryFilter, ConsoleSummaryFormatter

from helpers import digits_options

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def filtered(message, log_file='/w/1/1.log', config_copy='/w/cfg.py'):
    """What the console prints of ``message`` (None: nothing), and checks the record is left as it was for the log
    file's handler."""
    record = logging.LogRecord('mmengine', logging.INFO, __file__, 1, message, None, None)
    summaries = ConsoleSummaryFilter(log_file, config_copy)
    keep = summaries.filter(record)
    printed = ConsoleSummaryFormatter(logging.Formatter('%(message)s'), summaries).format(record)
    assert record.getMessage() == message
    return printed if keep else None


def test_the_console_gets_a_line_for_the_environment_the_config_and_the_hooks():
    environment = ('\n' + '-' * 60 + '\nSystem environment:\n    sys.platform: linux\n    Python: 3.11.7 (main) '
                   '[GCC 12]\n    CUDA available: False\n    PyTorch: 2.14.1\n    PyTorch compiling details: ...\n'
                   '\nRuntime environment:\n    seed: 3\n    Distributed training: False\n    GPU number: 1\n'
                   + '-' * 60 + '\n')
    assert filtered(environment) == ('Environment: Python 3.11.7, PyTorch 2.14.1, CUDA available: False, processes: '
                                     '1, seed 3 (the full report is in the log file /w/1/1.log)')
    assert filtered('Config:\n' + 'a = 1\n' * 300) == 'Config: 300 lines, in the log file /w/1/1.log and in /w/cfg.py'
    hooks = ('Hooks will be executed in the following order:\nbefore_run:\n(VERY_HIGH   ) RuntimeInfoHook    \n'
             '(BELOW_NORMAL) LoggerHook   \n -------------------- \nafter_train_iter:\n(NORMAL      ) IterTimerHook\n')
    assert filtered(hooks) == 'Hooks: IterTimerHook, LoggerHook, RuntimeInfoHook (their order is in the log file ' \
                              '/w/1/1.log)'
    assert filtered('paramwise_options -- backbone.blocks.0.norm1.weight:weight_decay=0.0') is None
    assert filtered('"FileClient" will be deprecated in future. Please use io functions in ...') is None
    assert filtered('Iter(train) [1/4]  loss: 3.0') == 'Iter(train) [1/4]  loss: 3.0'  # the rest is untouched


def test_the_confusion_matrix_is_logged_as_its_shape_and_kept_whole_in_the_json():
    from types import SimpleNamespace
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('compact_log_test')
    hub.update_scalar('test/mIoU', 50.0)
    matrix = np.arange(121).reshape(11, 11)
    hub.update_info('test/confusion_matrix', matrix)
    runner = SimpleNamespace(message_hub=hub, iter=0, epoch=0, max_iters=1, max_epochs=1,
                             test_loop=SimpleNamespace(dataloader=[0]))
    tag, log_str = CompactLogProcessor(by_epoch=False).get_log_after_epoch(runner, 1, 'test', with_non_scalar=True)
    assert 'confusion_matrix: 11x11 array (in the JSON log)' in log_str and '\n' not in log_str
    assert np.array_equal(tag['confusion_matrix'], matrix)


@pytest.mark.slow
def test_a_tiny_fine_tuning_prints_a_few_dozen_lines_and_logs_everything(python, tmp_path):
    from cosub_seg.datasets.digit_scenes import write_digit_scenes
    scenes = str(tmp_path / 'scenes')
    write_digit_scenes(scenes, num_train=4, num_val=2)
    work_dir = tmp_path / 'run'
    proc = subprocess.run(
        [python, 'tools/train_seg.py', 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py', '--work-dir',
         str(work_dir), '--cfg-options', 'model.backbone.init_cfg=None',
         f'train_dataloader.dataset.dataset.data_root={scenes}', f'val_dataloader.dataset.data_root={scenes}',
         'train_cfg.max_iters=4', 'train_cfg.val_interval=4', 'train_dataloader.batch_size=2',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
         'val_dataloader.persistent_workers=False', 'default_hooks.checkpoint.interval=4',
         'default_hooks.logger.interval=1'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = (proc.stdout + proc.stderr).splitlines()
    # 481 lines before (environment 35, config 310, hook order 95, 8 warnings); now the run itself.
    assert len(console) <= 40, '\n'.join(console)
    assert not any('Warning' in line or 'paramwise_options' in line for line in console)
    assert sum('Iter(train)' in line for line in console) == 4
    [log_file] = [str(p) for p in work_dir.glob('*/*.log')]
    assert any(' INFO - Config: ' in line and log_file in line for line in console)
    with open(log_file) as f:
        log = f.read()
    assert 'System environment:' in log and 'Config:\n' in log and 'Hooks will be executed' in log


@pytest.mark.slow
def test_pretraining_summarises_its_parameter_groups(digits_root, tmp_path, python):
    proc = subprocess.run([python, 'tools/pretrain.py', 'configs/pretrain/cosub_deit3-tiny_digits.py', '--work-dir',
                           str(tmp_path / 'run'), '--cfg-options', *digits_options(digits_root, epochs=1)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert 'paramwise_options' not in console  # 67 lines before
    assert re.search(r'weight decay 0.05 on [\d,]+ of [\d,]+ parameters; none on \d+ tensors', console)
    [log_file] = list((tmp_path / 'run').glob('*/*.log'))
    assert log_file.read_text().count('paramwise_options') == 67  # the log file keeps them (one a parameter)


@pytest.mark.parametrize('counts, expected_lr', [(1, 0.1 * 8 * 2 / 64), (4, 0.1 * 8 * 2 * 4 / 64)])
def test_auto_scale_lr_counts_the_batch_the_optimiser_steps_on(counts, expected_lr):
    """--auto-scale-lr: lr x (processes x per-process batch x accumulated iterations) / base_batch_size; MMEngine's
    own Runner leaves the accumulation out (2 processes of 8 images, base 64: 0.025, with 4 accumulated: 0.1)."""
    from mmengine.logging import MMLogger
    from mmengine.optim import OptimWrapper

    from cosub_seg.runtime import CosubRunner
    runner = CosubRunner.__new__(CosubRunner)  # only what scale_lr reads
    runner._train_dataloader, runner._world_size, runner.param_schedulers = dict(batch_size=8), 2, None
    runner.logger = MMLogger.get_instance('test_auto_scale_lr')
    wrapper = OptimWrapper(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1), accumulative_counts=counts)
    runner.scale_lr(wrapper, dict(enable=True, base_batch_size=64))
    assert wrapper.optimizer.param_groups[0]['lr'] == pytest.approx(expected_lr)
    runner.scale_lr(wrapper, dict(enable=False, base_batch_size=64))  # disabled: unchanged
    assert wrapper.optimizer.param_groups[0]['lr'] == pytest.approx(expected_lr)
