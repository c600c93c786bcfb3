"""Reliability pieces in-process: atomic writes and safe retention, finding the checkpoint to resume, reproducible
sampling, bad training data, hostile files, config keys, checkpoints that do not fit, non-finite losses and fp16
loss scaling. The end-to-end runs with real kills are in test_reliability_runs.py."""
import os
import os.path as osp
import random
import re
import stat
import uuid

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.runtime import BadSampleError, CheckedDataset, Draw, ReproducibleSampler
from cosub_seg.datasets import CheckSegAnnotation
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.runtime import AtomicLocalBackend, atomic_write, find_resumable_checkpoint
from cosub_seg.runtime.launch import UnknownConfigKeyError, add_train_args, config_from_args
from cosub_seg.runtime.checked_data import STAND_IN_DOMAIN
from cosub_seg.runtime.randomness import derive_seed, isolated_rng

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


# ---------------------------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_whole_files_and_keeps_the_umask(tmp_path):
    path = tmp_path / 'sub' / 'file.bin'
    atomic_write(str(path), b'first')
    atomic_write(str(path), b'second version')
    assert path.read_bytes() == b'second version'
    assert os.listdir(path.parent) == ['file.bin']  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
    path = tmp_path / 'file.bin'
    atomic_write(str(path), b'good')
    with pytest.raises(TypeError):
        atomic_write(str(path), object())  # fails inside the write
    assert path.read_bytes() == b'good'
    assert os.listdir(tmp_path) == ['file.bin']


class ToyModel(BaseModel):
    """y = w x, loss = mean((y - 1)^2); ``inputs`` are 2-vectors."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1, bias=False)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(x)
        if mode == 'loss':
            return dict(loss=((out - 1) ** 2).mean())
        return out


def toy_runner(tmp_path, epochs=3, hooks=None, optim_wrapper=None, dataset_size=4, **kwargs):
    dataset = [dict(inputs=torch.tensor([1.0, float(i)])) for i in range(dataset_size)]
    default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=1),
                         logger=dict(type='LoggerHook', interval=1))
    default_hooks.update(hooks or {})
    return Runner(
        model=ToyModel(), work_dir=str(tmp_path / 'run'), experiment_name=f'toy-{uuid.uuid4().hex}',
        train_dataloader=dict(dataset=dataset, sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2,
                              num_workers=0),
        optim_wrapper=optim_wrapper or dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs), default_hooks=default_hooks,
        default_scope='mmengine', randomness=dict(seed=0), **kwargs)


class RecordingBackend(AtomicLocalBackend):
    events = []

    def put(self, obj, filepath):
        super().put(obj, filepath)
        self.events.append(('put', osp.basename(filepath)))

    def remove(self, filepath):
        self.events.append(('remove', osp.basename(filepath)))
        super().remove(filepath)


def test_retention_deletes_an_old_checkpoint_only_after_the_new_one_is_complete(tmp_path):
    from mmengine.fileio import register_backend
    register_backend('recording_atomic', RecordingBackend, force=True)
    RecordingBackend.events.clear()
    runner = toy_runner(tmp_path, hooks=dict(checkpoint=dict(
        type='SafeCheckpointHook', interval=1, max_keep_ckpts=1, backend_args=dict(backend='recording_atomic'))))
    runner.train()
    checkpoints = [e for e in RecordingBackend.events if e[1].startswith('epoch_')]
    # MMEngine's CheckpointHook removes epoch_1 before writing epoch_2; this order keeps one complete file at all times.
    assert checkpoints == [('put', 'epoch_1.pth'), ('put', 'epoch_2.pth'), ('remove', 'epoch_1.pth'),
                           ('put', 'epoch_3.pth'), ('remove', 'epoch_2.pth')]
    assert sorted(f for f in os.listdir(runner.work_dir) if f.endswith('.pth')) == ['epoch_3.pth']
    with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(runner.work_dir, 'epoch_3.pth')


def test_the_newest_complete_checkpoint_is_resumed_whatever_last_checkpoint_says(tmp_path):
    def save(name, iteration):
        torch.save({'meta': {'iter': iteration}, 'state_dict': {'w': torch.zeros(1000)}}, tmp_path / name)
    save('epoch_1.pth', 4)
    save('iter_6.pth', 6)
    save('epoch_2.pth', 8)
    data = (tmp_path / 'epoch_2.pth').read_bytes()
    (tmp_path / 'epoch_3.pth').write_bytes(data[:len(data) // 2])  # a save cut short by a writer without atomicity
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    save('best_accuracy_epoch_9.pth', 99)  # no optimiser state: never resumed
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    (tmp_path / 'last_checkpoint').write_text('')  # torn while being written
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    assert find_resumable_checkpoint(str(tmp_path / 'empty')) is None


# ---------------------------------------------------------------------------------------------- reproducible sampling


class Numbers:
    """A dataset of 0..n-1 whose 'augmentation' draws one number from each global generator."""

    metainfo = dict(classes=('x', ))

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return dict(index=index, noise=(random.random(), float(np.random.rand()), torch.rand(1).item()))

    def get_data_info(self, index):
        return dict(img_path=f'{index}.png')


def draws(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return list(sampler)


def make_sampler(monkeypatch, inner, rank, world_size, n=12, seed=7):
    import mmengine.dataset.sampler as mmengine_samplers
    import cosub_seg.runtime.checked_data as checked
    import cosub_seg.datasets.samplers as samplers
    for module in (mmengine_samplers, checked, samplers):
        monkeypatch.setattr(module, 'get_dist_info', lambda: (rank, world_size))
    return ReproducibleSampler(CheckedDataset(Numbers(n), check_files=False), dict(type=inner, shuffle=True),
                               seed=seed)


@pytest.mark.parametrize('inner', ['DefaultSampler', 'RepeatAugSampler'])
def test_two_ranks_draw_what_one_rank_draws_with_the_same_seeds(monkeypatch, inner):
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        one = draws(make_sampler(monkeypatch, inner, 0, 1), epoch=3)
        ranks = [draws(make_sampler(monkeypatch, inner, r, 2), epoch=3) for r in (0, 1)]
    # Global position p * 2 + r on 2 ranks is position p * 2 + r on one: same index, same augmentation seed.
    interleaved = [d for pair in zip(*ranks) for d in pair]
    assert interleaved == one[:len(interleaved)]
    assert len({d.seed for d in one}) == len(one)  # every draw, repeats of an index included, has its own seed


def test_resuming_inside_an_epoch_and_fast_forwarding_continue_the_same_stream(monkeypatch):
    full = draws(make_sampler(monkeypatch, 'DefaultSampler', 0, 1), epoch=2)
    resumed = make_sampler(monkeypatch, 'DefaultSampler', 0, 1)
    resumed.resume_within_epoch(5)
    assert draws(resumed, epoch=2) == full[5:]
    assert draws(resumed, epoch=3) == draws(make_sampler(monkeypatch, 'DefaultSampler', 0, 1), epoch=3)
    forwarded = make_sampler(monkeypatch, 'InfiniteSampler', 0, 1)
    stream = iter(forwarded)
    forwarded.fast_forward(3)
    reference = iter(make_sampler(monkeypatch, 'InfiniteSampler', 0, 1))
    for position in range(8):
        got, want = next(stream), next(reference)
        assert (got.index, got.seed) == (want.index, want.seed)
        assert got.placeholder == (position < 3)
    assert draws(make_sampler(monkeypatch, 'DefaultSampler', 0, 1), epoch=4) != full  # epochs differ


def test_a_draw_augments_the_same_way_anywhere_and_leaves_the_global_generators_alone():
    dataset = CheckedDataset(Numbers(4), check_files=False)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    first = dataset[Draw(2, seed=1234)]
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1]) and torch.equal(torch.get_rng_state(), before[2])
    random.random()  # whatever happens in between (another worker, a resume) does not matter
    assert dataset[Draw(2, seed=1234)] == first
    assert dataset[Draw(2, seed=1235)]['noise'] != first['noise']
    with isolated_rng(1234):
        assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first['noise']
    assert dataset[Draw(0, 0, placeholder=True)] is None  # skipped batches after a resume load nothing


# ---------------------------------------------------------------------------------------------- bad training data


def digit_folder(tmp_path, digits_root, images=4):
    """A copy of the first ``images`` digits of class 0 as a training folder."""
    folder = tmp_path / 'data' / 'train' / '0'
    folder.mkdir(parents=True)
    for name in sorted(os.listdir(osp.join(digits_root, 'train', '0')))[:images]:
        (folder / name).write_bytes(open(osp.join(digits_root, 'train', '0', name), 'rb').read())
    return str(tmp_path / 'data'), sorted(str(folder / f) for f in os.listdir(folder))


def checked_folder(root, **kwargs):
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        return CheckedDataset(dict(type='ImageFolderDataset', data_root=root, data_prefix='train',
                                   pipeline=[dict(type='LoadImageFromFile'), dict(type='PackClsInputs')]), **kwargs)


@pytest.mark.parametrize('damage', ['corrupt', 'truncated'])
def test_a_bad_image_names_its_file(tmp_path, digits_root, damage):
    root, files = digit_folder(tmp_path, digits_root)
    data = open(files[1], 'rb').read()
    with open(files[1], 'wb') as f:
        f.write(b'not an image at all' if damage == 'corrupt' else data[:len(data) // 2])
    dataset = checked_folder(root)
    with pytest.raises(BadSampleError, match=re.escape(f'training sample index 1, img_path={files[1]} cannot be used')):
        dataset[Draw(1, 0)]
    skipping = checked_folder(root, on_bad_sample='skip')
    sample = skipping[Draw(1, 0)]
    # The stand-in is a random other sample, drawn from (STAND_IN_DOMAIN, the draw's seed, the attempt), so the same
    # draw gets the same stand-in in any process and after a resume.
    rng = np.random.default_rng(derive_seed(STAND_IN_DOMAIN, 0, 0))
    expected = next(i for i in (int(rng.integers(len(files))) for _ in range(64)) if i != 1)
    assert sample['data_samples'].img_path == files[expected]
    assert checked_folder(root, on_bad_sample='skip')[Draw(1, 0)]['data_samples'].img_path == files[expected]
    [report] = sample['data_samples'].skipped_bad_samples
    assert report.startswith(f'index 1, img_path={files[1]} (AssertionError: failed to load image')


def test_an_empty_or_misplaced_training_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'ImageFolderDataset: data_root .*nowhere is not a folder'):
        checked_folder(str(tmp_path / 'nowhere'))
    (tmp_path / 'misplaced' / 'training' / '0').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"folder .*misplaced/train \(data_root='.*misplaced' \+ "
                                                r"data_prefix.img_path='train'\) does not exist"):
        checked_folder(str(tmp_path / 'misplaced'))
    (tmp_path / 'empty' / 'train' / '0').mkdir(parents=True)
    with pytest.raises(ValueError, match=r'no images with endings .* found under .*empty/train'):
        checked_folder(str(tmp_path / 'empty'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        with pytest.raises(ValueError, match=r'DigitScenesDataset \(data_root=.*empty.*\) holds no samples'):
            CheckedDataset(dict(type='DigitScenesDataset', data_root=str(tmp_path / 'empty'),
                                data_prefix=dict(img_path='train', seg_map_path='train')))


@pytest.fixture
def scenes(tmp_path):
    write_digit_scenes(str(tmp_path / 'scenes'), num_train=3, num_val=1)
    return str(tmp_path / 'scenes')


def scene_dataset(root, pipeline=()):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return CheckedDataset(dict(
            type='DigitScenesDataset', data_root=root, pipeline=list(pipeline),
            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))


def test_a_missing_annotation_is_named_before_training(scenes):
    missing = osp.join(scenes, 'annotations', 'training', 'digitscene_tra_00001.png')
    os.remove(missing)
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f'1 file(s) that DigitScenesDataset lists do not exist, e.g. {missing}:')):
        scene_dataset(scenes)


SEG_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
                dict(type='CheckSegAnnotation', num_classes=11), dict(type='PackSegInputs')]


def test_an_annotation_of_another_size_is_named_with_both_sizes(scenes):
    path = osp.join(scenes, 'annotations', 'training', 'digitscene_tra_00002.png')
    cv2.imwrite(path, cv2.imread(path, cv2.IMREAD_UNCHANGED)[:100, :90])
    dataset = scene_dataset(scenes, SEG_PIPELINE)
    dataset[Draw(0, 0)]
    with pytest.raises(BadSampleError, match=re.escape(f'annotation {path} is 90x100 (w x h) but its image ') +
                       '.*digitscene_tra_00002.jpg is 128x128'):
        dataset[Draw(2, 0)]


def test_labels_outside_the_classes_are_named(scenes):
    path = osp.join(scenes, 'annotations', 'training', 'digitscene_tra_00000.png')
    annotation = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    annotation[:2, :2] = 40  # 39 after reduce_zero_label; 11 classes
    cv2.imwrite(path, annotation)
    expected = f'annotation {path} holds label values [39] outside [0, 11) that are not the ignore index 255 (after'
    with pytest.raises(BadSampleError, match=re.escape(expected)):
        scene_dataset(scenes, SEG_PIPELINE)[Draw(0, 0)]
    # The same check in a test pipeline (no wrapper), where 0 is reduced to 255, the ignore index.
    check = CheckSegAnnotation(num_classes=11)
    ok = dict(gt_seg_map=np.array([[0, 10], [255, 3]], np.uint8), ori_shape=(2, 2))
    assert check(ok) is ok


def test_an_unknown_backbone_name_is_named_with_close_matches():
    from cosub_seg.models import TimmSegBackbone
    with pytest.raises(ValueError, match=r"unknown timm model name 'convnext_tinny'.*Close matches: convnext_tiny"):
        TimmSegBackbone('convnext_tinny')


# ---------------------------------------------------------------------------------------------- config keys


def parse(*options):
    parser = add_train_args(__import__('argparse').ArgumentParser())
    return config_from_args(parser.parse_args([osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py'),
                                               '--cfg-options', *options]))


@pytest.mark.parametrize('option, message', [
    ('train_dataloder.batch_size=4', "has no key 'train_dataloder' at the top level.*Did you mean 'train_dataloader'"),
    ('max_epoch=3', "has no key 'max_epoch' at the top level.*Did you mean 'max_epochs'"),
    ('model.model_kwarg.depth=2', "has no key 'model_kwarg' at model.*Did you mean 'model_kwargs'"),
    ('train_dataloader.dataset.dataset.pipeline.9.size=3', r'pipeline in .* is a list of 5 items'),
])
def test_an_unknown_config_key_is_refused_with_a_suggestion(option, message):
    with pytest.raises(UnknownConfigKeyError, match=message):
        parse(option)


def test_known_keys_and_new_module_arguments_are_merged():
    cfg = parse('train_dataloader.batch_size=5', 'train_dataloader.dataset.dataset.indices=8',
                'model.model_kwargs.depth=2')
    assert cfg.train_dataloader.batch_size == 5
    assert cfg.train_dataloader.dataset.dataset.indices == 8 and cfg.model.model_kwargs.depth == 2


# ---------------------------------------------------------------------------------------------- checkpoints


class _Hostile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_hostile_checkpoints_are_refused_by_mmengine_loading_even_with_the_unsafe_switch(tmp_path, monkeypatch):
    """MMEngine's load_checkpoint serves load_from, resume and init_cfg=dict(type='Pretrained'); torch's
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 would make its plain torch.load run the payload."""
    from mmengine.runner.checkpoint import _load_checkpoint
    from cosub_seg.models import CosubClassifier
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'hostile.pth')
    torch.save({'state_dict': {}, 'meta': _Hostile(str(marker))}, path)
    with pytest.raises(RuntimeError, match='holds more than tensors and is refused'):
        _load_checkpoint(path)
    model = CosubClassifier(arch='deit3_small_patch16_224', num_classes=10, num_submodels=1,
                            model_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2),
                            init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(RuntimeError, match='holds more than tensors and is refused'):
        model.init_weights()
    assert not marker.exists()


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_the_resume_scan_never_runs_a_hostile_checkpoint(tmp_path, monkeypatch, legacy):
    """--resume auto loads every epoch_*/iter_*.pth of the work dir to rank them. A hostile epoch_9.pth (its pickle
    opens a marker file for writing when unpickled without weights_only) next to a legit epoch_2.pth, with torch's
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (which turns every torch.load that does not pass weights_only into an unsafe
    one): the payload never runs and epoch_2.pth is chosen. A zip file reaches _training_iteration's torch.load; a
    legacy (non-zip) file is read by is_complete_checkpoint's torch.load first."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    torch.save({'meta': {'iter': 8}, 'state_dict': {'w': torch.zeros(3)}}, work_dir / 'epoch_2.pth')
    # The hostile file claims the newest iteration: were it loaded, it would also be the one chosen.
    torch.save({'meta': {'iter': 99}, 'state_dict': {}, 'payload': _Hostile(str(marker))}, work_dir / 'epoch_9.pth',
               _use_new_zipfile_serialization=not legacy)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_9.pth'))
    assert find_resumable_checkpoint(str(work_dir)) == str(work_dir / 'epoch_2.pth')
    assert not marker.exists()


def test_a_checkpoint_whose_head_has_other_classes_is_refused(tmp_path):
    other = ToyModel()
    other.linear = nn.Linear(2, 3, bias=False)  # three outputs where the model has one
    path = str(tmp_path / 'other.pth')
    torch.save({'state_dict': other.state_dict(), 'meta': {}}, path)
    runner = toy_runner(tmp_path, hooks=dict(checkpoint_fit=dict(type='CheckpointFitHook')), cfg=dict(load_from=path))
    expected = f'{path} does not fit the model built from the config (linear.weight: (3, 2) in the checkpoint, (1, 2)'
    with pytest.raises(ValueError, match=re.escape(expected) + '.*trained for 3 classes and the config has 1'):
        runner.load_checkpoint(path)
    relaxed = toy_runner(tmp_path, hooks=dict(checkpoint_fit=dict(type='CheckpointFitHook', ignore_keys=['linear'])))
    initial = relaxed.model.linear.weight.detach().clone()
    relaxed.load_checkpoint(path)  # allowed: the layer keeps its initialisation
    assert relaxed.model.linear.weight.shape == (1, 2)
    torch.testing.assert_close(relaxed.model.linear.weight.detach(), initial, rtol=0, atol=0)
    # And a checkpoint that fits is loaded: its weights, not the initialisation, are in the model afterwards.
    fitting = ToyModel()
    with torch.no_grad():
        fitting.linear.weight.copy_(torch.tensor([[0.25, -1.5]]))
    torch.save({'state_dict': fitting.state_dict(), 'meta': {}}, str(tmp_path / 'fits.pth'))
    relaxed.load_checkpoint(str(tmp_path / 'fits.pth'))
    torch.testing.assert_close(relaxed.model.linear.weight.detach(), torch.tensor([[0.25, -1.5]]), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- numerical faults


def test_a_non_finite_loss_stops_before_the_checkpoint_of_its_epoch(tmp_path):
    runner = toy_runner(tmp_path, hooks=dict(non_finite_loss=dict(type='NonFiniteLossHook')), dataset_size=4)
    dataset = runner.train_dataloader.dataset
    dataset[3]['inputs'] = torch.tensor([float('inf'), 1.0])  # second batch of every epoch: iteration 2
    with pytest.raises(FloatingPointError, match=r'non-finite loss at iteration 2 \(epoch 1\): loss=(nan|inf)\. '
                                                 'Training stops before this step reaches a checkpoint: no checkpoint'):
        runner.train()
    assert not [f for f in os.listdir(runner.work_dir) if f.endswith('.pth')]


def amp_runner(tmp_path, monkeypatch, inf_at, max_skipped_in_a_row=50, **kwargs):
    """A toy run with MMEngine's AmpOptimWrapper and dynamic loss scaling on the CPU: the wrapper only refuses to be
    built without a GPU, and torch's GradScaler works on the CPU. The inputs of the listed iterations hold 1e30, so
    their scaled gradients overflow float32."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    runner = toy_runner(tmp_path, epochs=1, dataset_size=12, hooks=dict(
        non_finite_loss=dict(type='NonFiniteLossHook', max_skipped_in_a_row=max_skipped_in_a_row)),
        optim_wrapper=dict(type='AmpOptimWrapper', optimizer=dict(type='SGD', lr=0.01)), **kwargs)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.optim_wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 16)
    for iteration in inf_at:
        for row in (2 * iteration - 2, 2 * iteration - 1):
            runner.train_dataloader.dataset[row]['inputs'] = torch.tensor([1e30, 1.0])
    return runner


class WeightLog(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.weights = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights.append(runner.model.linear.weight.detach().clone())


def test_steps_skipped_by_fp16_loss_scaling_are_counted_not_fatal(tmp_path, monkeypatch):
    log = WeightLog()
    runner = amp_runner(tmp_path, monkeypatch, inf_at=[2, 5], custom_hooks=[log])
    runner.train()
    assert runner.message_hub.get_info('amp_skipped_steps') == 2
    # Two halvings, no growth (GradScaler doubles only after 2000 good steps).
    assert runner.optim_wrapper.loss_scaler.get_scale() == 2.0 ** 14
    w = log.weights
    assert len(w) == 6 and all(torch.isfinite(x).all() for x in w)
    assert torch.equal(w[1], w[0]) and torch.equal(w[4], w[3])  # skipped: the weights did not move
    assert not torch.equal(w[2], w[1]) and not torch.equal(w[5], w[4])


def test_fp16_loss_scaling_that_skips_every_step_stops(tmp_path, monkeypatch):
    runner = amp_runner(tmp_path, monkeypatch, inf_at=[2, 3, 4], max_skipped_in_a_row=3)
    with pytest.raises(FloatingPointError, match=r'fp16 loss scaling skipped 3 steps in a row \(up to iteration 4\)'):
        runner.train()
