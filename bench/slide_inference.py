"""Batched sliding-window inference vs mmseg's, on ADE20k-sized inputs.

UperNet (512 channels, pool scales 1/2/3/6) on ConvNeXt-T, random weights, eval mode, 512x512 windows at stride 341,
at ADE20k's test scale (512x683: 2 windows) and the 1.75x scale of multi-scale testing (896x1195: 12 windows).
For each size: ``CosubEncoderDecoder`` with ``crop_batch_size='auto'`` first tunes its chunk on real calls, then it
and mmseg's ``EncoderDecoder.slide_inference`` are timed round-robin; the logits of both are compared.

    python bench/slide_inference.py [--sizes 512x683 896x1195] [--repeats 2] [--trials 1] [--amp] [--tf32]
        [--device cuda] [--out FILE]

fp32 means fp32 on a GPU too: TF32 is switched off (torch lets cuDNN convolutions use it by default), unless
``--tf32``. A check-sized run: ``--sizes 512x683 --repeats 1``. Writes bench/results/slide_inference.json (or
``--out``): rows with ``size``, ``device``, ``speedup_vs_mmseg`` (images/s ratio), ``max_abs_diff``, the raw
figures, the TF32 switches, the machine and the torch / CUDA versions.
"""
import argparse
import os.path as osp
import sys
import time
from contextlib import nullcontext

import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import cosub_seg  # noqa: E402,F401  (registers the modules)
from bench.common import (add_common_args, apply_timing_args, cuda_flags, device_name, print_table,  # noqa: E402
                          time_round_robin, write_json)
from cosub_seg.models.slide import ChunkTuner, slide_windows  # noqa: E402


def build(channels: int, device: torch.device):
    norm = dict(type='BN')
    cfg = ConfigDict(
        type='CosubEncoderDecoder',
        num_submodels=1,
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='TimmSegBackbone', arch='convnext_tiny'),
        decode_head=dict(type='UPerHead', in_channels=[96, 192, 384, 768], in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=channels, num_classes=150, norm_cfg=norm,
                         align_corners=False),
        test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341), crop_batch_size='auto'),
    )
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg)
    return model.to(device).eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', default=['512x683', '896x1195'])
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--trials', type=int, default=None, help='tuner measurements per chunk (default 1 on a '
                        'CPU, 2 on a GPU)')
    parser.add_argument('--channels', type=int, default=512, help="UPerHead channels (mmseg's recipe: 512)")
    parser.add_argument('--amp', action='store_true', help='bf16 autocast')
    parser.add_argument('--tf32', action='store_true', help="leave TF32 to torch's defaults on a GPU (fp32: off)")
    add_common_args(parser, 'slide_inference')
    args = parser.parse_args(argv)
    timing = apply_timing_args(args)
    device = torch.device(args.device)
    if not args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    trials = args.trials or (1 if device.type == 'cpu' else 2)
    torch.manual_seed(0)
    model = build(args.channels, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.amp else nullcontext()
    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.split('x'))
        x = torch.randn(1, 3, h, w, device=device)
        metas = [dict(ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w))]
        model._chunk_tuner = ChunkTuner(trials=trials)  # tune for this size, on real calls
        windows = len(slide_windows(h, w, (512, 512), (341, 341)))
        start, tuning_calls = time.perf_counter(), 0
        with torch.no_grad(), autocast:
            while model._chunk_tuner.choice is None:
                model.slide_inference(x, [dict(m) for m in metas])
                tuning_calls += 1
            tuning_s = time.perf_counter() - start
            outputs = {}

            def run(name, fn):
                def call():
                    outputs[name] = fn(model, x, [dict(m) for m in metas])
                return call
            times = time_round_robin({'mmseg': run('mmseg', EncoderDecoder.slide_inference),
                                      'batched': run('batched', type(model).slide_inference)},
                                     repeats=args.repeats, warmup=0, device=device, clock=args.clock)
        diff = (outputs['batched'].float() - outputs['mmseg'].float()).abs().max().item()
        rows.append(dict(size=size, device=device.type, windows=windows, chunk=model._chunk_tuner.choice,
                         mmseg_img_s=round(1 / times['mmseg'], 4), batched_img_s=round(1 / times['batched'], 4),
                         speedup_vs_mmseg=round(times['mmseg'] / times['batched'], 3), max_abs_diff=diff,
                         tuning_calls=tuning_calls, tuning_s=round(tuning_s, 1)))
        print(rows[-1], flush=True)
    print_table(rows, ['size', 'windows', 'chunk', 'mmseg_img_s', 'batched_img_s', 'speedup_vs_mmseg', 'max_abs_diff',
                       'tuning_calls'],
                f'slide inference, UperNet ({args.channels} ch) + ConvNeXt-T, 512x512 windows, stride 341, '
                f'{device_name(device)}, {"bf16" if args.amp else "fp32"}, {timing}')
    floor, tol = (0.97, 1e-4) if device.type == 'cpu' else (1.3, 1e-4 if not args.amp else 5e-2)
    for row in rows:
        ok = row['speedup_vs_mmseg'] >= floor and row['max_abs_diff'] <= tol
        print(f"{'met ' if ok else 'MISS'}  {row['size']}: speedup >= {floor} and max abs diff <= {tol}")
    meta = dict(device_name=device_name(device), timing=timing, channels=args.channels,
                amp='bf16' if args.amp else 'fp32', repeats=args.repeats, **cuda_flags())
    write_json('slide_inference', rows, meta, args.out)


if __name__ == '__main__':
    main()
