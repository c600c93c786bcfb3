"""What activation checkpointing costs and saves in the UperNet ViT-B fine-tuning step (issue 16), side by side.

The model is configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py as it is (DeiT III-B backbone, stochastic depth
0.2 over a linear schedule with 'bernoulli' sampling, MultiLevelNeck, UPerHead + FCN auxiliary head, the config's
``num_submodels``: 1, plain fine-tuning), with random weights (``init_cfg=None``), BN instead of SyncBN in the heads
(one process), AdamW, and a batch of random crops with labels over its 150 classes (bench/compile_amp.py's
``seg_case``); each step is MMEngine's ``train_step`` (data preprocessor, forward, losses, backward, optimiser step).
Variants, all through the config's options:

* ``plain``: no checkpointing, dropped rows skipped (``model.backbone.stochastic_depth.compute='skip'``: what 'auto',
  the default, does on a CPU from a branch rate of 0.05 on; on CUDA 'auto' masks with 'bernoulli' sampling);
* ``ckpt``: activation checkpointing of every block (``model.backbone.grad_checkpointing=True``), skipping;
* ``mask_ckpt``: checkpointing, dropped rows masked (``compute='mask'``): the recomputation runs every row;
* ``ckpt_head``: ``ckpt`` plus checkpointing of each ConvModule of the decode and auxiliary heads
  (``model.head_checkpointing=True``): at 512 the UPerHead's stride-4 activations are most of what a step keeps.

All variants start from the same weights and crops; they are timed round-robin in one process (median of
``--repeats``, after one warm-up step that also creates AdamW's state). Peak memory of a step: on a GPU the
allocator's high-water mark above what is allocated before the step (in this process); on a CPU the highest resident
set size during the step above the resting size, in a fresh process per variant, after one step (bench/common.py).
The memory probes draw the same kept rows in every variant (same seed, same draws).

    python bench/seg_checkpointing.py [--batch 2] [--crop 512] [--repeats 3] [--no-memory] [--device cuda]
        [--threads 1 --clock cpu] [--variants ckpt ckpt_head] [--out FILE]

Writes bench/results/seg_checkpointing.json (or ``--out``): a row per variant with ``step_s`` (seconds per step),
``time_vs_plain`` / ``time_vs_ckpt`` (its time over plain's / ckpt's) and with memory ``peak_bytes``, ``peak_mb``,
``memory_vs_plain`` / ``memory_vs_ckpt``; every row also has the batch, crop, ``num_submodels`` and stochastic-depth
settings. ``plain`` and ``ckpt`` always run (the ratios' bases); ``--variants`` picks the others. Prints whether
issue 16's target holds for each checkpointing variant (at most 0.5x the memory for at most 1.4x the time).
``--tiny`` shrinks the model (bench/seg_vs_mmseg.py's: 64 wide, 4 blocks, 32-channel heads) for checking the script.
"""
import argparse
import copy
import json
import os.path as osp
import sys

import torch
from mmengine.optim import OptimWrapper

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import (add_common_args, apply_timing_args, device_name, memory_in_subprocess,  # noqa: E402
                          peak_step_bytes, print_table, time_round_robin, write_json)
from bench.compile_amp import seg_case  # noqa: E402
from bench.seg_vs_mmseg import TINY  # noqa: E402

CONFIG = osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py')
VARIANTS = {
    'plain': {'model.backbone.grad_checkpointing': False, 'model.backbone.stochastic_depth.compute': 'skip'},
    'ckpt': {'model.backbone.grad_checkpointing': True, 'model.backbone.stochastic_depth.compute': 'skip'},
    'mask_ckpt': {'model.backbone.grad_checkpointing': True, 'model.backbone.stochastic_depth.compute': 'mask'},
    'ckpt_head': {'model.backbone.grad_checkpointing': True, 'model.backbone.stochastic_depth.compute': 'skip',
                  'model.head_checkpointing': True},
}
BASES = ('plain', 'ckpt')
# Issue 16's target for checkpointing: at most this share of plain's peak memory for at most this share of its time.
TARGET_MEMORY, TARGET_TIME = 0.5, 1.4


def build(variant: str, args, device: torch.device):
    """The variant's model in training mode on ``device``, its optimiser wrapper and its batch (the same weights
    and crops in every variant)."""
    options = dict(VARIANTS[variant], **{'model.data_preprocessor.size': (args.crop, args.crop)})
    if args.tiny:
        options.update(TINY['ours'])
    torch.manual_seed(0)
    model, data = seg_case(args.batch, options, CONFIG, args.crop, sampling=None)  # the config's sampling
    model = model.to(device).train()
    return model, OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4)), data


def make_step(variant: str, args, device: torch.device):
    """One training step of the variant, and its model."""
    model, optim, data = build(variant, args, device)
    return (lambda: model.train_step(copy.deepcopy(data), optim)), model


def measure_memory(variant: str, args, device: torch.device) -> int:
    step, _ = make_step(variant, args, device)
    step()  # the optimiser state exists, as in a long run
    return peak_step_bytes(step, device)


def probe_args(args, variant: str):
    return (['--memory-probe', variant, '--device', args.device, '--batch', str(args.batch), '--crop', str(args.crop)]
            + (['--threads', str(args.threads)] if args.threads else []) + (['--tiny'] if args.tiny else []))


def settings(model) -> dict:
    """What every variant shares, from a model as built: the config's num_submodels and stochastic depth."""
    sd = model.backbone.stochastic_depth
    return dict(num_submodels=model.num_submodels, drop_rate=sd.rate, drop_schedule=sd.schedule,
                sampling=sd.sampling)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=2, help="crops per step (the config's 2 per GPU; at least 2: "
                        'the pooling branch of UperNet normalises 1x1 maps over the batch)')
    parser.add_argument('--crop', type=int, default=512, help='crop size (the config: 512)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory probes')
    parser.add_argument('--tiny', action='store_true', help='a tiny model (a check of the script, not a benchmark)')
    parser.add_argument('--variants', nargs='+', choices=[v for v in VARIANTS if v not in BASES],
                        default=[v for v in VARIANTS if v not in BASES],
                        help='variants besides plain and ckpt (default: all)')
    parser.add_argument('--memory-probe', choices=list(VARIANTS), help=argparse.SUPPRESS)
    add_common_args(parser, 'seg_checkpointing')
    args = parser.parse_args(argv)
    if args.batch < 2:
        parser.error('--batch must be at least 2 (UperNet normalises its 1x1 pooled maps over the batch)')
    timing = apply_timing_args(args)
    device = torch.device(args.device)
    gpu = device.type == 'cuda'
    if args.memory_probe:
        print(json.dumps(dict(peak_bytes=measure_memory(args.memory_probe, args, device))))
        return
    variants = [v for v in VARIANTS if v in BASES or v in args.variants]
    steps = {}
    for variant in variants:
        steps[variant], model = make_step(variant, args, device)
    shared = settings(model)
    del model
    times = time_round_robin(steps, repeats=args.repeats, warmup=1, device=device, clock=args.clock)
    mem = None
    if not args.no_memory:
        if gpu:  # exact in this process: the allocator's high-water mark above what is allocated
            mem = {variant: peak_step_bytes(steps[variant], device) for variant in variants}
        else:
            mem = {variant: memory_in_subprocess(osp.abspath(__file__), probe_args(args, variant))
                   for variant in variants}
    del steps
    rows = []
    for variant in variants:
        options = VARIANTS[variant]
        row = dict(variant=variant, grad_checkpointing=options['model.backbone.grad_checkpointing'],
                   head_checkpointing=options.get('model.head_checkpointing', False),
                   compute=options['model.backbone.stochastic_depth.compute'], step_s=times[variant],
                   time_vs_plain=round(times[variant] / times['plain'], 4),
                   time_vs_ckpt=round(times[variant] / times['ckpt'], 4))
        if mem is not None:
            row.update(peak_bytes=mem[variant], peak_mb=round(mem[variant] / 2**20, 1),
                       memory_vs_plain=round(mem[variant] / mem['plain'], 4),
                       memory_vs_ckpt=round(mem[variant] / mem['ckpt'], 4))
        rows.append(row)
    columns = ['variant', 'grad_checkpointing', 'head_checkpointing', 'compute', 'step_s', 'time_vs_plain',
               'time_vs_ckpt']
    if mem is not None:
        columns += ['peak_mb', 'memory_vs_plain', 'memory_vs_ckpt']
    print_table(rows, columns, f'UperNet ViT-B fine-tuning step{" (tiny model)" if args.tiny else ""}, batch '
                f'{args.batch} at {args.crop}x{args.crop}, num_submodels {shared["num_submodels"]}, stochastic depth '
                f'{shared["drop_rate"]} {shared["drop_schedule"]} {shared["sampling"]}, {device_name(device)}, '
                f'{timing} (vs_plain / vs_ckpt: this variant over plain / ckpt)')
    if mem is not None:
        print()
        for row in rows[1:]:
            ok = row['memory_vs_plain'] <= TARGET_MEMORY and row['time_vs_plain'] <= TARGET_TIME
            print(f"{'met ' if ok else 'MISS'}  issue 16, {row['variant']}: at most {TARGET_MEMORY}x the memory for "
                  f"at most {TARGET_TIME}x the time (memory {row['memory_vs_plain']:.3f}, "
                  f"time {row['time_vs_plain']:.3f})")
    write_json('seg_checkpointing', rows, dict(device=device_name(device), timing=timing, repeats=args.repeats,
                                               batch=args.batch, crop=args.crop, tiny=args.tiny,
                                               config=osp.relpath(CONFIG, ROOT), **shared), args.out)


if __name__ == '__main__':
    main()
