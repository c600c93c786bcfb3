"""What cosub during fine-tuning costs: the UperNet training step with ``num_submodels=2`` vs 1, side by side.

The model is the embedded default's (configs/seg/upernet_cosub-deit3-tiny_digitscenes.py, random weights, batch 8
at 64x64, AdamW); each step is MMEngine's ``train_step``. Variants per stochastic-depth rate: plain fine-tuning
(``num_submodels=1``), cosub with skipped rows (``stochastic_depth.compute='skip'``: what 'auto', the default, does
on a CPU) and cosub with masked rows (``'mask'``, the reference implementation's cost). Step times are medians of
round-robin repeats.

    python bench/seg_cosub_step.py [--drop-rates 0.1 0.45] [--repeats 10] [--threads 1 --clock cpu]

Writes bench/results/seg_cosub_step.json.
"""
import argparse
import copy
import os.path as osp
import sys

import torch
from mmengine.optim import OptimWrapper

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import add_common_args, apply_timing_args, device_name, print_table, time_round_robin, write_json  # noqa: E402
from bench.compile_amp import seg_case  # noqa: E402

VARIANTS = {
    'plain': {'model.num_submodels': 1},
    'cosub skip': {'model.num_submodels': 2, 'model.backbone.stochastic_depth.compute': 'skip'},
    'cosub mask': {'model.num_submodels': 2, 'model.backbone.stochastic_depth.compute': 'mask'},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--drop-rates', type=float, nargs='+', default=[0.1, 0.45])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=10)
    add_common_args(parser, 'seg_cosub_step')
    args = parser.parse_args(argv)
    timing = apply_timing_args(args)
    device = torch.device(args.device)
    rows = []
    for rate in args.drop_rates:
        steps = {}
        for name, options in VARIANTS.items():
            torch.manual_seed(0)  # same weights and crops in every variant
            model, data = seg_case(args.batch, {**options, 'model.backbone.stochastic_depth.rate': rate})
            model = model.to(device).train()
            optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))
            steps[name] = (lambda model=model, optim=optim, data=copy.deepcopy(data): model.train_step(data, optim))
        times = time_round_robin(steps, repeats=args.repeats, warmup=1, device=device, clock=args.clock)
        for name, seconds in times.items():
            rows.append(dict(drop_rate=rate, variant=name, step_ms=round(seconds * 1e3, 2),
                             cost_vs_plain=round(seconds / times['plain'], 3),
                             speedup_vs_mask=round(times['cosub mask'] / seconds, 3)))
    print_table(rows, ['drop_rate', 'variant', 'step_ms', 'cost_vs_plain', 'speedup_vs_mask'],
                f'UperNet fine-tuning step of the embedded default, batch {args.batch}, {device_name(device)}, '
                f'{timing} (cost_vs_plain: 2 would be a doubled batch)')
    write_json('seg_cosub_step', rows, dict(device=device_name(device), timing=timing, repeats=args.repeats,
                                            batch=args.batch), args.out)


if __name__ == '__main__':
    main()
