"""Our UperNet ViT-B training step against mmseg's own, side by side: time per iteration and peak memory.

Ours: configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py (TimmSegBackbone on timm's DeiT III-B, stochastic depth
0.2 skipping dropped rows, MultiLevelNeck, UPerHead + FCN auxiliary head, AdamW with layer-wise lr decay). mmseg's:
its own configs/vit/vit_deit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py (mmseg's VisionTransformer, drop path 0.1
masked, the same neck and heads, AdamW): the model a user would otherwise pick. Each is built from its config file
with the registry (random weights, no checkpoint read), SyncBN turned into BN (one process), 150 classes, and trained
with its own config's optimiser wrapper on the same batch of random crops and labels. One step is MMEngine's
``train_step`` (data preprocessor, forward, losses, backward, optimiser step).

Precisions: ``fp32``, and ``amp`` as the ``--amp`` switch of our tools (and of mmseg's train.py) sets it: on a GPU
``AmpOptimWrapper``, fp16 autocast with dynamic loss scaling (``--amp-dtype bfloat16`` for bf16); on a CPU bf16
autocast (``AutocastOptimWrapper``). Per precision both models are timed round-robin (median of ``--repeats``).
Peak memory of a step: on a GPU the allocator's high-water mark above what is allocated before the step; on a CPU the
highest resident set size above the resting size, in a fresh process per model and precision (bench/common.py).

    python bench/seg_vs_mmseg.py [--batch 2] [--size 512] [--precisions fp32 amp] [--repeats 5] [--no-memory]
        [--device cuda] [--threads 1 --clock cpu] [--out FILE]

Writes bench/results/seg_vs_mmseg.json (or ``--out``): a row per precision with ``ours_s`` / ``mmseg_s`` (seconds
per step), ``time_ratio`` (ours / mmseg: below 1, ours is faster), ``ours_peak_bytes`` / ``mmseg_peak_bytes`` and
``memory_ratio`` (ours / mmseg). ``--tiny`` shrinks both models alike (64 wide, 4 blocks, 32-channel heads) for
checking the script itself.
"""
import argparse
import copy
import json
import logging
import os.path as osp
import sys

import mmseg
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import (add_common_args, apply_timing_args, device_name, memory_in_subprocess,  # noqa: E402
                          peak_step_bytes, print_table, time_round_robin, write_json)
from cosub_seg.analysis import build_model  # noqa: E402
from cosub_seg.runtime.launch import apply_amp  # noqa: E402

OURS_CONFIG = osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py')
MMSEG_CONFIG = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', 'vit',
                        'vit_deit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py')
MODELS = ('ours', 'mmseg')
NUM_CLASSES = 150

# --tiny: the same shrinking of both models (embedding width, blocks, heads' channels).
TINY_HEADS = {'model.neck.in_channels': [64] * 4, 'model.neck.out_channels': 64,
              'model.decode_head.in_channels': [64] * 4, 'model.decode_head.channels': 32,
              'model.auxiliary_head.in_channels': 64, 'model.auxiliary_head.channels': 16}
TINY = {
    'ours': {'model.backbone.model_kwargs': dict(embed_dim=64, depth=4, num_heads=2),
             'model.backbone.out_indices': [0, 1, 2, 3], **TINY_HEADS},
    'mmseg': {'model.backbone.embed_dims': 64, 'model.backbone.num_layers': 4, 'model.backbone.num_heads': 2,
              'model.backbone.out_indices': [0, 1, 2, 3], **TINY_HEADS},
}


def build(which: str, size: int, precision: str, amp_dtype, device: torch.device, tiny: bool):
    """The model of ``which`` config in training mode on ``device`` and its config's optimiser wrapper."""
    options = dict(TINY[which]) if tiny else {}
    options['model.data_preprocessor.size'] = (size, size)
    if which == 'mmseg':
        options['model.backbone.img_size'] = (size, size)
    torch.manual_seed(0)
    model, cfg = build_model(OURS_CONFIG if which == 'ours' else MMSEG_CONFIG, options)
    assert model.decode_head.num_classes == NUM_CLASSES and model.auxiliary_head.num_classes == NUM_CLASSES
    model = model.to(device).train()
    if precision == 'amp' and device.type == 'cuda':
        apply_amp(cfg, amp_dtype)  # what --amp does: AmpOptimWrapper, dynamic loss scaling
    elif precision == 'amp':  # what --amp does without a GPU (also on a machine that has one)
        cfg.optim_wrapper.update(type='AutocastOptimWrapper', dtype='bfloat16')
    with DefaultScope.overwrite_default_scope('mmseg'):
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    return model, optim


def make_batch(batch: int, size: int, seed: int = 0) -> dict:
    """Random crops (uint8, as the loading pipeline gives them) and label maps over the 150 classes, with some
    ignored (255) pixels, as mmseg's ``PackSegInputs`` packs them."""
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator) for _ in range(batch)]
    samples = []
    for _ in range(batch):
        labels = torch.randint(0, NUM_CLASSES, (1, size, size), generator=generator)
        labels[:, :size // 8] = 255
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def make_step(which, args, precision, device):
    model, optim = build(which, args.size, precision, args.amp_dtype, device, args.tiny)
    data = make_batch(args.batch, args.size)

    def step():
        model.train_step(copy.deepcopy(data), optim)
    return step


def measure_memory(which, args, precision, device) -> int:
    step = make_step(which, args, precision, device)
    step()  # the optimiser state exists, as in a long run
    return peak_step_bytes(step, device)


def probe_args(args, which, precision):
    return (['--memory-probe', which, precision, '--device', args.device, '--batch', str(args.batch), '--size',
             str(args.size)] + (['--amp-dtype', args.amp_dtype] if args.amp_dtype else [])
            + (['--threads', str(args.threads)] if args.threads else []) + (['--tiny'] if args.tiny else []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=2, help="crops per step (the configs' 2 per GPU; at least 2: "
                        'the pooling branch of UperNet normalises 1x1 maps over the batch)')
    parser.add_argument('--size', type=int, default=512, help='crop size (the configs: 512)')
    parser.add_argument('--precisions', nargs='+', choices=['fp32', 'amp'], default=['fp32', 'amp'])
    parser.add_argument('--amp-dtype', choices=['float16', 'bfloat16'], default=None,
                        help="autocast dtype of 'amp' (default: float16 on a GPU, bfloat16 on a CPU)")
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory probes')
    parser.add_argument('--tiny', action='store_true', help='tiny models (a check of the script, not a benchmark)')
    parser.add_argument('--memory-probe', nargs=2, metavar=('MODEL', 'PRECISION'), help=argparse.SUPPRESS)
    add_common_args(parser, 'seg_vs_mmseg')
    args = parser.parse_args(argv)
    timing = apply_timing_args(args)
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # not a line per parameter group
    device = torch.device(args.device)
    gpu = device.type == 'cuda'
    if args.memory_probe:
        which, precision = args.memory_probe
        print(json.dumps(dict(peak_bytes=measure_memory(which, args, precision, device))))
        return
    amp_dtype = args.amp_dtype or ('float16' if gpu else 'bfloat16')
    rows = []
    for precision in args.precisions:
        steps = {which: make_step(which, args, precision, device) for which in MODELS}
        times = time_round_robin(steps, repeats=args.repeats, warmup=1, device=device, clock=args.clock)
        row = dict(precision=precision if precision == 'fp32' else f'amp ({amp_dtype})', batch=args.batch,
                   size=args.size, ours_s=times['ours'], mmseg_s=times['mmseg'],
                   time_ratio=round(times['ours'] / times['mmseg'], 4))
        if not args.no_memory:
            if gpu:
                mem = {which: peak_step_bytes(steps[which], device) for which in MODELS}
            else:
                mem = {which: memory_in_subprocess(osp.abspath(__file__), probe_args(args, which, precision))
                       for which in MODELS}
            row.update(ours_peak_bytes=mem['ours'], mmseg_peak_bytes=mem['mmseg'],
                       ours_peak_mb=round(mem['ours'] / 2**20, 1), mmseg_peak_mb=round(mem['mmseg'] / 2**20, 1),
                       memory_ratio=round(mem['ours'] / mem['mmseg'], 4))
        del steps
        if gpu:
            torch.cuda.empty_cache()
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ['precision', 'batch', 'size', 'ours_s', 'mmseg_s', 'time_ratio']
    if not args.no_memory:
        columns += ['ours_peak_mb', 'mmseg_peak_mb', 'memory_ratio']
    print_table(rows, columns, f'UperNet ViT-B training step, ours / mmseg\'s{" (tiny models)" if args.tiny else ""},'
                f' {device_name(device)}, {timing} (ratio < 1: ours is faster / smaller)')
    for row in rows:
        ok = row['time_ratio'] <= 1.0
        print(f"{'met ' if ok else 'MISS'}  {row['precision']}: our step at least as fast as mmseg's "
              f"(time ratio {row['time_ratio']:.3f})")
    write_json('seg_vs_mmseg', rows, dict(device=device_name(device), timing=timing, repeats=args.repeats,
                                          tiny=args.tiny, ours_config=osp.relpath(OURS_CONFIG, ROOT),
                                          mmseg_config=osp.relpath(MMSEG_CONFIG, osp.dirname(mmseg.__file__))),
               args.out)


if __name__ == '__main__':
    main()
