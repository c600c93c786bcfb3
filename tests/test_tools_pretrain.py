"""tools/pretrain.py (cli/pretrain.py) end to end, slow: every recipe for one iteration, resume, and a 2-process
torchrun on the CPU."""
import glob
import math
import os
import os.path as osp
import subprocess

import pytest
import torch

import cosub_seg  # noqa: F401  (allow-lists the data classes of training checkpoints)

from helpers import digits_options, run_tool, scalars

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = 32

# Overrides that make a recipe run one iteration on the digits at TINY pixels with a batch of 2.
# The crop is step 1 of the train pipeline and steps 1-2 of the test pipeline in every recipe.
RECIPES = {
    'cosub_deit3-small_in1k.py': ['model.model_kwargs.img_size=32'],
    'cosub_deit3-base_in1k.py': ['model.model_kwargs.img_size=32'],
    # 6 of ViT-L's 24 blocks (its width, optimiser and drop path kept), as tests/test_configs.py steps it: the full
    # depth took 90 s here, most of it writing a 5 GB checkpoint.
    'cosub_deit3-large_in1k.py': ['model.model_kwargs.img_size=32', 'model.model_kwargs.depth=6'],
    'cosub_swin-base_in1k.py': ['model.model_kwargs.img_size=32'],
    'cosub_convnext-base_in1k.py': [],
    'cosub_regnety-16gf_in1k.py': [],
    'cosub_pit-b_in1k.py': ['model.model_kwargs.img_size=32'],
    'cosub_xcit-s12_in1k.py': ['model.model_kwargs.img_size=32'],
}


def tiny_options(data_root, work_dir):
    return [
        f'train_dataloader.dataset.dataset.data_root={data_root}', f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        'train_dataloader.dataset.dataset.indices=2', 'val_dataloader.dataset.indices=2',
        'test_dataloader.dataset.indices=2',
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.dataset.pipeline.1.size={TINY}', f'val_dataloader.dataset.pipeline.1.size={TINY}',
        f'val_dataloader.dataset.pipeline.2.crop_size={TINY}',
        'model.num_classes=10', 'model.data_preprocessor.num_classes=10',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1',
        # The optimiser state of a full-size recipe doubles the checkpoint to write (1-2 GB); resume and the
        # checkpoint's content are tested on the tiny recipe (test_resume_continues_from_the_iteration_it_stopped).
        'default_hooks.checkpoint.save_optimizer=False',
    ]


@pytest.mark.slow
@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_every_recipe_trains_one_iteration(recipe, digits_root, tmp_path, python):
    work_dir = str(tmp_path / 'run')
    options = tiny_options(digits_root, work_dir) + RECIPES[recipe]
    try:
        run_tool([python, 'tools/pretrain.py', f'configs/pretrain/{recipe}', '--work-dir', work_dir,
                  '--cfg-options', *options])
        records = scalars(work_dir)
        train = [r for r in records if 'loss' in r]
        assert train and all(math.isfinite(r['loss']) for r in train)
        assert train[-1]['loss'] == pytest.approx(train[-1]['loss_label'] + train[-1]['loss_peer'], rel=1e-4)
        assert train[-1]['loss_peer'] > 0
        assert any('accuracy/top1' in r for r in records)
        assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    finally:
        # A full-size recipe's checkpoint (weights, EMA, AdamW moments) is 0.5-5 GB: the eight of them filled the
        # CI disk once. Drop them as soon as they are checked; the logs stay for a failed run.
        for path in glob.glob(osp.join(work_dir, '*.pth')):
            os.remove(path)


@pytest.mark.slow
def test_resume_continues_from_the_iteration_it_stopped(digits_root, tmp_path, python):
    config = 'configs/pretrain/cosub_deit3-tiny_digits.py'
    work_dir = str(tmp_path / 'run')
    run_tool([python, 'tools/pretrain.py', config, '--work-dir', work_dir, '--cfg-options',
              *digits_options(digits_root, epochs=2)])
    # The allow-list covers everything our training checkpoints hold: they load with weights_only=True...
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 4  # 2 epochs x 8 images / batch 4
    # ...and it is what makes them load: a process that has not imported cosub_seg refuses them.
    probe = subprocess.run([python, '-c', 'import sys, torch; torch.load(sys.argv[1], weights_only=True)',
                            osp.join(work_dir, 'epoch_2.pth')], capture_output=True, text=True)
    assert probe.returncode != 0 and 'Unsupported global' in probe.stderr
    proc = run_tool([python, 'tools/pretrain.py', config, '--work-dir', work_dir, '--resume', '--cfg-options',
                     *digits_options(digits_root, epochs=3)])
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 2, iter: 4' in log
    iters = [r['iter'] for r in scalars(work_dir) if 'loss' in r]
    assert iters[-2:] == [5, 6], iters


@pytest.mark.slow
def test_two_process_torchrun_on_cpu(digits_root, tmp_path, python):
    work_dir = str(tmp_path / 'dist')
    run_tool(['bash', 'tools/dist_pretrain.sh', 'configs/pretrain/cosub_deit3-tiny_digits.py', '2',
              '--work-dir', work_dir, '--cfg-options', *digits_options(digits_root, epochs=2, per_epoch_images=16)],
             env=dict(PYTHON=python, PORT='29517'))
    train = [r for r in scalars(work_dir) if 'loss' in r]
    # 16 images over 2 processes with a batch of 4 each: 2 iterations an epoch.
    assert [r['iter'] for r in train] == [1, 2, 3, 4]
    assert all(math.isfinite(r['loss']) for r in train)
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
