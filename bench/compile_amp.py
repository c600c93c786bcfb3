"""What torch.compile and bf16 autocast give to a training step of each stage, side by side.

The models are the embedded default's (configs/pretrain/cosub_deit3-tiny_digits.py: cosub pretraining step, batch
64 at 32x32; configs/seg/upernet_cosub-deit3-tiny_digitscenes.py: UperNet fine-tuning step, batch 8 at 64x64, with
cosub during fine-tuning off), or larger ones with ``--model``. Each step is MMEngine's ``train_step`` (data
preprocessor, forward, loss, backward, optimiser step), the function MMEngine's ``compile=True`` compiles. Variants:
eager fp32, eager bf16 (autocast), compiled fp32, compiled bf16. Stochastic depth draws a fixed number of rows
(``stochastic_depth.sampling='fixed'``) in every variant, so shapes are static for the compiler. Compilation time is
reported apart; step times are medians of round-robin repeats after it.

    python bench/compile_amp.py [--stages pretrain seg] [--repeats 10] [--no-compile]

Writes bench/results/compile_amp.json.
"""
import argparse
import copy
import os.path as osp
import sys
import time
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement, PixelData
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import add_common_args, apply_timing_args, device_name, print_table, time_round_robin, write_json  # noqa: E402
from cosub_seg.engine.optimizers import AutocastOptimWrapper  # noqa: E402
from cosub_seg.registry import MODELS  # noqa: E402

PRETRAIN_CONFIG = osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py')
SEG_CONFIG = osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py')


def pretrain_case(batch: int):
    cfg = Config.fromfile(PRETRAIN_CONFIG).model
    cfg.stochastic_depth.sampling = 'fixed'
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        model = MODELS.build(cfg)
    inputs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(batch)]
    samples = [BaseDataElement(gt_label=torch.tensor([i % 10])) for i in range(batch)]
    return model, dict(inputs=inputs, data_samples=samples)


def seg_case(batch: int, options: Optional[dict] = None, config_file: str = SEG_CONFIG, crop: int = 64,
             sampling: Optional[str] = 'fixed'):
    """A segmentation config's model (default: the demo's UperNet) with random weights, BN instead of SyncBN in the
    heads, and a batch of random ``crop`` x ``crop`` crops with labels over the config's classes; ``options`` are
    ``--cfg-options`` style overrides of the config (e.g. ``{'model.num_submodels': 2}``). ``sampling``: the
    stochastic-depth sampling (default 'fixed': static shapes for the compiler; None keeps the config's)."""
    config = Config.fromfile(config_file)
    config.merge_from_dict(dict(options or {}))
    cfg = config.model
    cfg.backbone.init_cfg = None
    if sampling is not None:
        cfg.backbone.stochastic_depth.sampling = sampling
    for key in ('decode_head', 'auxiliary_head'):
        cfg[key].norm_cfg = dict(type='BN', requires_grad=True)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(cfg)
    inputs = [torch.randint(0, 256, (3, crop, crop), dtype=torch.uint8) for _ in range(batch)]
    samples = []
    for i in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(crop, crop), ori_shape=(crop, crop), pad_shape=(crop, crop)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, cfg.decode_head.num_classes, (1, crop, crop)))
        samples.append(sample)
    return model, dict(inputs=inputs, data_samples=samples)


def wrapper(model, device, bf16: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if not bf16:
        return OptimWrapper(optimizer)
    if device.type == 'cuda':
        return AmpOptimWrapper(dtype='bfloat16', optimizer=optimizer)
    return AutocastOptimWrapper(dtype='bfloat16', optimizer=optimizer)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--stages', nargs='+', default=['pretrain', 'seg'], choices=['pretrain', 'seg'])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--no-compile', action='store_true', help='eager variants only')
    add_common_args(parser, 'compile_amp')
    args = parser.parse_args(argv)
    timing = apply_timing_args(args)
    device = torch.device(args.device)
    rows = []
    for stage in args.stages:
        base, data = pretrain_case(64) if stage == 'pretrain' else seg_case(8)
        base = base.to(device).train()
        steps, compile_s = {}, {}
        variants = [('eager', False), ('eager', True)]
        if not args.no_compile:
            variants += [('compiled', False), ('compiled', True)]
        for mode, bf16 in variants:
            name = f"{mode} {'bf16' if bf16 else 'fp32'}"
            model = copy.deepcopy(base)
            optim = wrapper(model, device, bf16)
            fn = model.train_step
            if mode == 'compiled':
                fn = torch.compile(fn)
                start = time.perf_counter()
                fn(data, optim)  # compiles (forward and backward graphs)
                fn(data, optim)
                compile_s[name] = time.perf_counter() - start
            steps[name] = (lambda fn=fn, optim=optim: fn(data, optim))
        times = time_round_robin(steps, repeats=args.repeats, warmup=1, device=device, clock=args.clock)
        eager = times['eager fp32']
        for name, seconds in times.items():
            rows.append(dict(stage=stage, variant=name, step_ms=round(seconds * 1e3, 2),
                             speedup_vs_eager_fp32=round(eager / seconds, 3),
                             compile_s=round(compile_s.get(name, 0.0), 1)))
    print_table(rows, ['stage', 'variant', 'step_ms', 'speedup_vs_eager_fp32', 'compile_s'],
                f'training step of the embedded default, {device_name(device)}, {timing}')
    write_json('compile_amp', rows, dict(device=device_name(device), timing=timing, repeats=args.repeats), args.out)


if __name__ == '__main__':
    main()
