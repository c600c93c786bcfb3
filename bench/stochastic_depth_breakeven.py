"""Where skipping dropped rows starts to pay: masked vs skipped stochastic depth on single blocks.

Times forward + backward of one DeiT III-S block (197 tokens x 384) and one ConvNeXt-T block (96 x 56 x 56) with
:class:`cosub_seg.cosub.StochasticDepth` masking and skipping, side by side, over drop rates, with 'fixed' sampling
so that every step drops exactly round(B * p) rows. The break-even rate is where skip / mask time crosses 1
(linear interpolation between measured rates); ``SKIP_BREAK_EVEN`` in cosub_seg/cosub/stochastic_depth.py is set
from it.

    python bench/stochastic_depth_breakeven.py [--batch 64] [--repeats 7] [--device cpu]
"""
import argparse
import copy
import os.path as osp
import sys

import timm
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from bench.common import add_common_args, apply_timing_args, device_name, print_table, time_round_robin, write_json  # noqa: E402
from cosub_seg.cosub import StochasticDepthConfig  # noqa: E402
from cosub_seg.models.stochastic_depth import configure_stochastic_depth  # noqa: E402

RATES = (0.02, 0.05, 0.1, 0.2, 0.45)


def blocks():
    """(name, block, input) with the shapes the blocks see in DeiT III-S and ConvNeXt-T at 224."""
    vit = timm.create_model('deit3_small_patch16_224', drop_path_rate=0.1)
    convnext = timm.create_model('convnext_tiny', drop_path_rate=0.1)
    return [('deit3_small block', vit, lambda m: m.blocks[6], (197, 384)),
            ('convnext_tiny block', convnext, lambda m: m.stages[0].blocks[1], (96, 56, 56))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=7)
    add_common_args(parser, 'stochastic_depth_breakeven')
    args = parser.parse_args(argv)
    timing = apply_timing_args(args)
    device = torch.device(args.device)
    rows = []
    for name, model, pick, shape in blocks():
        x = torch.randn(args.batch, *shape, device=device)
        for rate in RATES:
            variants = {}
            for compute in ('mask', 'skip'):
                m = copy.deepcopy(model)
                config = StochasticDepthConfig(rate, 'constant', compute=compute, sampling='fixed')
                configure_stochastic_depth(m, config)
                block = pick(m).to(device).train()

                def step(block=block):
                    inp = x.detach().requires_grad_()
                    block(inp).square().mean().backward()
                variants[compute] = step
            times = time_round_robin(variants, repeats=args.repeats, warmup=1, device=device, clock=args.clock)
            kept = max(1, int(args.batch * (1 - rate) + 0.5))
            rows.append(dict(block=name, drop_rate=rate, dropped_fraction=round(1 - kept / args.batch, 4),
                             mask_ms=times['mask'] * 1e3, skip_ms=times['skip'] * 1e3,
                             skip_vs_mask=times['skip'] / times['mask']))
    print_table(rows, ['block', 'drop_rate', 'dropped_fraction', 'mask_ms', 'skip_ms', 'skip_vs_mask'],
                f'forward + backward of one block, batch {args.batch}, {device_name(device)}, {timing} '
                '(skip_vs_mask < 1: skipping is faster)')
    summary = {}
    for name in dict.fromkeys(r['block'] for r in rows):
        own = [r for r in rows if r['block'] == name]
        even = None
        if own[0]['skip_vs_mask'] <= 1.0:
            even = f"<= {own[0]['drop_rate']}"
        for a, b in zip(own, own[1:]):
            if even is None and a['skip_vs_mask'] > 1.0 >= b['skip_vs_mask']:
                t = (a['skip_vs_mask'] - 1.0) / (a['skip_vs_mask'] - b['skip_vs_mask'])
                even = round(a['drop_rate'] + t * (b['drop_rate'] - a['drop_rate']), 3)
        summary[name] = even if even is not None else f"> {own[-1]['drop_rate']}"
        print(f'break-even drop rate, {name}: {summary[name]}')
    write_json('stochastic_depth_breakeven', rows, dict(device=device_name(device), timing=timing, batch=args.batch,
                                                         sampling='fixed', break_even=summary), args.out)


if __name__ == '__main__':
    main()
