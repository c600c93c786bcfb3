"""Helpers shared by several test files (not a test file: pytest collects nothing here). Running a tool and reading
what it logged, the overrides that shrink the digits configs to a few iterations, a PNG reader, the demo work dir of
the Makefile, a pickle that runs code when loaded, a segmentor's own prediction, the demo segmentor exported with
random weights, and a toy MMEngine run."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import uuid

import cv2
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


# ---------------------------------------------------------------------------------------------- running the tools


def run_tool(args, cwd=ROOT, env=None, timeout=900):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
    return proc


def scalars(work_dir):
    """The training and validation records MMEngine's LocalVisBackend wrote."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    assert files, f'no scalars.json under {work_dir}'
    records = []
    for path in files:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def digits_options(digits_root, epochs, per_epoch_images=8):
    return [
        f'train_dataloader.dataset.dataset.data_root={digits_root}', f'val_dataloader.dataset.data_root={digits_root}',
        f'train_dataloader.dataset.dataset.indices={per_epoch_images}', 'val_dataloader.dataset.indices=8',
        'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
        f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=5',
        'randomness.deterministic=True', 'randomness.seed=3',
    ]


def seg_options(scenes, checkpoint=None, iters=4):
    """Overrides that make the digit-scenes config run ``iters`` iterations on ``scenes`` at batch 2 (the backbone
    from ``checkpoint`` unless None, e.g. where tools/pipeline.py sets it)."""
    backbone = [f'model.backbone.init_cfg.checkpoint={checkpoint}'] if checkpoint else []
    return backbone + [
        f'train_dataloader.dataset.dataset.data_root={scenes}', f'val_dataloader.dataset.data_root={scenes}',
        f'test_dataloader.dataset.data_root={scenes}',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
        'param_scheduler.0.end=1', 'param_scheduler.1.begin=1', f'param_scheduler.1.end={iters}',
    ]


# ---------------------------------------------------------------------------------------------- files


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_size(path):
    """(width, height) from the PNG header (signature, then the IHDR chunk), after checking the file decodes."""
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE, f'{path} is not a PNG'
    assert head[12:16] == b'IHDR'
    width, height = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape[:2] == (height, width)
    return width, height


def demo_work_dir():
    """The --work-dir of tools/pipeline.py in the Makefile's demo target."""
    with open(osp.join(ROOT, 'Makefile')) as f:
        makefile = f.read()
    demo = makefile[makefile.index('\ndemo:'):]
    return re.search(r'tools/pipeline\.py .*?--work-dir (\S+)', demo, re.S).group(1)


class Hostile:
    """A pickle that opens ``path`` for writing when it is unpickled: what a checkpoint that runs code does. The
    tests check that the file is never created."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def own_prediction(model, image_path):
    """The model's test_step on the image through the config's own test pipeline (annotation included)."""
    from mmengine.dataset import Compose
    with DefaultScope.overwrite_default_scope('mmseg'):
        pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
    seg_map = image_path.replace('images', 'annotations').replace('.jpg', '.png')
    sample = pipeline(dict(img_path=image_path, seg_map_path=seg_map, reduce_zero_label=True, seg_fields=[]))
    with torch.no_grad():
        [result] = model.test_step(dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']]))
    return result.pred_sem_seg.data


def export_demo_segmentor(out_dir, seed=0):
    """The demo segmentor (configs/seg/upernet_cosub-deit3-tiny_digitscenes.py) with random weights (``seed``),
    its batch-norm statistics made non-trivial, exported by ``export_segmentor`` to ``out_dir``: the mmseg
    ``<config>.py`` + ``.pth`` and the model folder (config.json + model.safetensors). Returns its paths and the
    model (eval mode)."""
    from mmengine.config import Config
    from mmseg.registry import MODELS as SEG_MODELS

    from cosub_seg.convert import export_segmentor
    from cosub_seg.datasets.digit_scenes import SCENE_CLASSES, SCENE_PALETTE

    config = osp.join(ROOT, 'configs', 'seg', 'upernet_cosub-deit3-tiny_digitscenes.py')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(cfg.model).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    os.makedirs(out_dir, exist_ok=True)
    checkpoint = osp.join(out_dir, 'iter_1.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(
        classes=list(SCENE_CLASSES), palette=SCENE_PALETTE))), checkpoint)
    paths = export_segmentor(config, checkpoint, osp.join(out_dir, 'exported'))
    return dict(paths, model=model)


# ---------------------------------------------------------------------------------------------- a toy run


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
