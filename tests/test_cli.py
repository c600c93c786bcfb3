"""cosub_seg/errors.py and cosub_seg/cli/: a user error is one line without a traceback (the traceback with --debug,
which every tool takes); the console scripts point at the package's mains; the convert tool's help uses the paths
`make demo` writes; the pipeline tool's choice of checkpoints and of the validation that goes with them."""
import importlib
import importlib.util
import os.path as osp
import re
import subprocess

import pytest
from mmengine.config import Config

from cosub_seg.errors import ConfigError, DataError, MissingFileError, TrainingStopped, UserError, cli_main, one_line

from helpers import demo_work_dir

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'


def test_console_scripts_point_at_the_package_mains():
    tomllib = pytest.importorskip('tomllib')  # Python >= 3.11
    with open(osp.join(ROOT, 'pyproject.toml'), 'rb') as f:
        scripts = tomllib.load(f)['project']['scripts']
    assert {'cosub-pretrain', 'cosub-train-seg', 'cosub-test-seg', 'cosub-pipeline'} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(':')
        assert callable(getattr(importlib.import_module(module), function)), name
        # tools/<name>.py is a wrapper of the same main, so checkouts and the dist/slurm launchers keep working.
        wrapper = osp.join(ROOT, 'tools', module.rsplit('.', 1)[-1] + '.py')
        with open(wrapper) as f:
            assert f'from {module} import main' in f.read(), wrapper


def test_a_user_error_is_one_line_without_traceback_and_debug_shows_it(capsys, monkeypatch):
    monkeypatch.delenv('COSUB_DEBUG', raising=False)

    @cli_main
    def main(argv=None):
        raise MissingFileError('config file nowhere.py does not exist')

    with pytest.raises(SystemExit) as exit_info:
        main(['nowhere.py'])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == 'FileNotFoundError: config file nowhere.py does not exist\n'
    with pytest.raises(MissingFileError, match='nowhere.py does not exist'):
        main(['nowhere.py', '--debug'])  # the exception itself, so Python prints its traceback

    @cli_main
    def buggy(argv=None):
        raise ZeroDivisionError('a bug, not a user error')

    with pytest.raises(ZeroDivisionError):  # anything else keeps its traceback
        buggy([])


def test_one_line_takes_off_what_mmengine_and_the_data_loader_add():
    # MMEngine's registry rebuilds an error raised while building a module with the class and file in front.
    built = ConfigError('class `CheckedDataset` in cosub_seg/datasets/checked.py: class `DigitScenesDataset` in '
                        'cosub_seg/datasets/digit_scenes.py: on_bad_sample must be "raise" or "skip", got \'ignore\'')
    assert one_line(built) == 'ValueError: on_bad_sample must be "raise" or "skip", got \'ignore\''
    # torch's data loader rebuilds a worker's error with the worker's traceback in the message.
    worker = DataError('Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):'
                       '\n  File "x.py", line 1, in f\n    raise DataError(msg)\ncosub_seg.errors.DataError: '
                       'annotation a.png is 90x100 (w x h) but its image a.jpg is 128x128: re-export it at that size\n')
    assert one_line(worker) == ('ValueError: annotation a.png is 90x100 (w x h) but its image a.jpg is 128x128: '
                                're-export it at that size')
    # The kind printed is the built-in exception: scripts matching it keep working.
    assert one_line(TrainingStopped('non-finite loss at iteration 3')).startswith('FloatingPointError: non-finite')
    assert isinstance(TrainingStopped('x'), (UserError, FloatingPointError))


def test_the_tool_prints_one_line_for_a_missing_config_and_the_traceback_with_debug(python):
    proc = subprocess.run([python, 'tools/train_seg.py', 'configs/seg/nowhere.py'], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ['FileNotFoundError: config file configs/seg/nowhere.py does not exist']
    debug = subprocess.run([python, 'tools/train_seg.py', 'configs/seg/nowhere.py', '--debug'], cwd=ROOT,
                           capture_output=True, text=True)
    assert debug.returncode == 1
    assert 'Traceback (most recent call last)' in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == ('cosub_seg.errors.MissingFileError: config file '
                                                     'configs/seg/nowhere.py does not exist')


@pytest.mark.parametrize('module', ['pretrain', 'train_seg', 'test_seg', 'pipeline', 'convert_checkpoint',
                                    'analyze_model'])
def test_every_tool_takes_debug(module, capsys):
    import importlib
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f'cosub_seg.cli.{module}').main(['--help'])
    assert exit_info.value.code == 0
    assert re.search(r'--debug +show the full traceback', capsys.readouterr().out)


def test_convert_checkpoint_help_uses_the_paths_make_demo_writes():
    from cosub_seg.cli import convert_checkpoint
    iters = Config.fromfile(osp.join(ROOT, SEG_CONFIG)).train_cfg.max_iters
    epochs = Config.fromfile(osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py')).train_cfg.max_epochs
    work_dir = demo_work_dir()
    for text in (convert_checkpoint.__doc__, open(osp.join(ROOT, 'tools/convert_checkpoint.py')).read()):
        assert f'{work_dir}/pretrain/epoch_{epochs}.pth exported/' in text
        assert f'{work_dir}/seg/iter_{iters}.pth exported/' in text
        assert 'work_dirs/cosub_deit3-tiny_digits/' not in text and 'work_dirs/upernet_cosub' not in text


def test_checkpoint_choice_and_the_validation_that_goes_with_it(tmp_path):
    from cosub_seg.cli.pipeline import best_checkpoint, checkpoint_step, last_checkpoint, validation_at
    with pytest.raises(FileNotFoundError, match='saved no checkpoint'):
        last_checkpoint(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='run without --use-best'):
        best_checkpoint(str(tmp_path))
    (tmp_path / 'best_accuracy_top1_epoch_3.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_5.pth'))
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_5.pth')
    best = best_checkpoint(str(tmp_path))
    assert (checkpoint_step(best), checkpoint_step(str(tmp_path / 'epoch_5.pth'))) == (3, 5)
    assert checkpoint_step('iter_2000.pth') == 2000 and checkpoint_step('model.safetensors') is None
    records = [{'loss': 1.0, 'step': 1}, {'accuracy/top1': 60.0, 'step': 1}, {'accuracy/top1': 80.0, 'step': 3},
               {'accuracy/top1': 70.0, 'step': 5}]
    assert validation_at(records, 3, 'accuracy/top1')['accuracy/top1'] == 80.0
    assert validation_at(records, 4, 'accuracy/top1')['accuracy/top1'] == 70.0  # not validated: the last one
    assert validation_at(records, 1, 'mIoU') is None
