"""What a cosub training step costs: plain vs the reference cosub step vs ours, side by side.

For DeiT III models at constant drop-path rates (the cosub recipes' schedule), one training step (forward + backward
+ LAMB step, BCE cosub loss) of:

* ``plain``: the batch once, timm's masked DropPath (ordinary training, no co-training);
* ``reference``: the cosub step as the authors' code does it: the batch doubled, timm's masked DropPath;
* ``ours``: the batch doubled, :mod:`cosub_seg.cosub.stochastic_depth` skipping the dropped rows
  (``compute='skip'``: 'auto' masks on CUDA with Bernoulli draws, because of what this variant measured there) with
  Bernoulli draws; ``ours_fixed``: the same with 'fixed' sampling (a fixed count of kept rows, static shapes);
  ``ours_compiled`` / ``ours_fixed_compiled``: those two with the model under ``torch.compile`` (compile time is
  measured apart, on the first calls); ``ours_ckpt``: ``ours`` with activation checkpointing of every block
  (:mod:`cosub_seg.models.checkpointing`), ``ours_mask_ckpt``: the same masking instead of skipping; their rows
  add ``<v>_time_vs_ours`` and ``<v>_memory_vs_ours``.

All variants share the initial weights; they are timed round-robin in one process (median of ``--repeats``). Peak
memory of a step: on a GPU ``torch.cuda.max_memory_allocated`` above what is allocated before the step (in this
process); on a CPU the highest resident set size during the step above the resting size, in a fresh process per
variant (see bench/common.py).

Model FLOP utilisation (``*_mfu``): the FLOPs the step computes per second over the card's dense bf16 peak
(:data:`PEAK_BF16_TFLOPS`; 'n/a' on another device). FLOPs are those of cosub_seg.analysis (what
tools/analyze_model.py reports: fvcore's count of multiply-adds, fused attention included) x 2 (a multiply-add is
two FLOPs) x 3 (backward = 2 forwards), per image per pass: one pass for ``plain``, two for ``reference``; for ours,
two passes whose residual branches run on the kept rows only (1 - p of them for Bernoulli draws, on average;
round(2B (1 - p)) / 2B with 'fixed' sampling). The optimiser step is not counted.

    python bench/cosub_step.py [--models deit3_small_patch16_224 ...] [--rates 0.1 0.2 0.45 0.6] [--batch 8 4]
        [--variants plain reference ours ...] [--repeats 3] [--amp] [--no-memory] [--device cuda] [--out FILE]

Defaults: on a CPU, DeiT III-S / -B at batch 8 / 4, fp32, variants plain, reference, ours; on a GPU, DeiT III-S /
-B / -L at batch 64 each, all six variants (issue 12: pass ``--amp`` for bf16). Writes bench/results/cosub_step.json
(or ``--out``): rows with ``model``, ``drop_rate``, per variant ``<v>_s`` (seconds per step), ``<v>_img_s`` (images
per second, before doubling), ``<v>_mfu`` and with memory ``<v>_peak_bytes`` / ``<v>_peak_mb``;
``speedup_vs_reference`` (reference / ours time), ``cost_vs_plain`` (ours / plain time), ``reference_vs_plain``,
``memory_ratio_vs_reference`` (ours / reference peak memory), and for every other ours variant ``<v>_speedup_vs_
reference``, ``<v>_cost_vs_plain``, ``<v>_memory_ratio_vs_reference``.
"""
import argparse
import copy
import gc
import json
import os.path as osp
import sys
import time
from contextlib import nullcontext
from typing import Dict, Optional

import timm
import torch
from mmengine.analysis import FlopAnalyzer
from timm.layers import DropPath
from timm.optim import Lamb

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import (add_common_args, apply_timing_args, device_name, memory_in_subprocess,  # noqa: E402
                          peak_step_bytes, print_table, time_round_robin, write_json)
from cosub_seg.analysis import sdpa_flop_jit  # noqa: E402
from cosub_seg.cosub import cosub_loss  # noqa: E402
from cosub_seg.cosub import StochasticDepthConfig  # noqa: E402
from cosub_seg.models.checkpointing import set_activation_checkpointing  # noqa: E402
from cosub_seg.models.stochastic_depth import configure_stochastic_depth, stochastic_depth_slots  # noqa: E402

VARIANTS = ('plain', 'reference', 'ours', 'ours_fixed', 'ours_compiled', 'ours_fixed_compiled', 'ours_ckpt',
            'ours_mask_ckpt')
CPU_VARIANTS = ('plain', 'reference', 'ours')
OURS = tuple(v for v in VARIANTS if v.startswith('ours'))
NUM_CLASSES = 1000

# Dense (no sparsity) bf16 tensor-core peak of a card, TFLOP/s, by what torch.cuda.get_device_name contains (first
# match). From NVIDIA's datasheets, which quote the peak with 2:4 sparsity, halved: H100 SXM5 1,979 -> 989 (the
# SXM5 card reports itself as 'NVIDIA H100 80GB HBM3'), H100 PCIe 1,513 -> 756, H200 (SXM and NVL) 1,979 -> 989;
# A100 (SXM and PCIe) 312 dense. Another card: 'n/a'.
PEAK_BF16_TFLOPS = (
    ('H100 PCIe', 756.0),
    ('H100 80GB HBM3', 989.0),
    ('H100 SXM', 989.0),
    ('H200', 989.0),
    ('A100', 312.0),
)


def peak_bf16_flops(name: str) -> Optional[float]:
    """The card's dense bf16 peak in FLOP/s, or None for a card not in :data:`PEAK_BF16_TFLOPS` (or a CPU)."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def create(model_name: str, rate: float, img_size: Optional[int], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    kwargs = dict(num_classes=NUM_CLASSES, drop_path_rate=rate)
    if img_size:
        kwargs['img_size'] = img_size
    return timm.create_model(model_name, **kwargs)


def input_size(model: torch.nn.Module) -> int:
    return model.patch_embed.img_size[0] if hasattr(model, 'patch_embed') else model.pretrained_cfg['input_size'][-1]


def configure(base: torch.nn.Module, rate: float, variant: str, device: torch.device) -> torch.nn.Module:
    """A copy of ``base`` with the variant's stochastic depth, on ``device``, in training mode."""
    model = copy.deepcopy(base)
    if variant.startswith('ours'):
        sampling = 'fixed' if 'fixed' in variant else 'bernoulli'
        compute = 'mask' if '_mask' in variant else 'skip'
        configure_stochastic_depth(model, StochasticDepthConfig(rate, 'constant', compute=compute, sampling=sampling))
        if variant.endswith('_ckpt'):
            set_activation_checkpointing(model)
    else:  # timm's own DropPath, at the constant rate of the cosub recipes
        for parent, name in stochastic_depth_slots(model):
            setattr(parent, name, DropPath(rate))
    return model.to(device).train()


def build(model_name: str, rate: float, variant: str, device: torch.device, img_size: Optional[int] = None):
    return configure(create(model_name, rate, img_size), rate, variant, device)


def make_step(model, variant: str, batch: int, device: torch.device, amp: bool, optimizer=None, forward=None):
    optimizer = optimizer or Lamb(model.parameters(), lr=1e-4, weight_decay=0.05)
    forward = model if forward is None else forward
    size = input_size(model)
    images = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    copies = 1 if variant == 'plain' else 2
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()

    def step():
        with autocast:
            logits = forward(images.repeat(copies, 1, 1, 1) if copies > 1 else images)
        loss = cosub_loss(logits.float().view(copies, batch, -1), target).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def flops_per_pass(base: torch.nn.Module) -> Dict[str, float]:
    """Multiply-adds of one image's forward pass (cosub_seg.analysis's count) and the share of them inside the
    residual branches (a ViT block's two branches hold all its counted operations)."""
    model = copy.deepcopy(base).eval()
    size = input_size(model)
    analyzer = FlopAnalyzer(model, (torch.randn(1, 3, size, size),))
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analyzer.total()
        by_module = analyzer.by_module()
    branches = sum(by_module.get(f'blocks.{i}', 0) for i in range(len(getattr(model, 'blocks', []))))
    return dict(macs=float(total), branch_share=branches / total)


def executed_passes(variant: str, rate: float, batch: int, branch_share: float) -> float:
    """Full forward passes' worth of work one step computes, per image of the batch."""
    if variant == 'plain':
        return 1.0
    if variant == 'reference':
        return 2.0
    rows = 2 * batch
    kept = max(1, int(rows * (1 - rate) + 0.5)) / rows if 'fixed' in variant else 1 - rate
    return 2.0 * (1 - branch_share * (1 - kept))


def measure_memory(model_name, rate, variant, batch, device, amp, img_size=None) -> int:
    """Peak bytes of one step above the resting state (on a CPU: run in a fresh process)."""
    model = build(model_name, rate, variant, device, img_size)
    forward = torch.compile(model) if variant.endswith('compiled') else model
    optimizer = Lamb(model.parameters(), lr=1e-4, weight_decay=0.05)
    # A step at batch 1 creates the optimiser state, so the measured step starts from a long run's resting state.
    make_step(model, variant, 1, device, amp, optimizer, forward)()
    step = make_step(model, variant, batch, device, amp, optimizer, forward)
    if variant.endswith('compiled'):
        step()  # compiled for this batch
    return peak_step_bytes(step, device)


def memory_probe_args(args, model_name, rate, variant, batch):
    return (['--memory-probe', model_name, str(rate), variant, '--device', args.device, '--batch', str(batch)]
            + (['--amp'] if args.amp else []) + (['--threads', str(args.threads)] if args.threads else [])
            + (['--img-size', str(args.img_size)] if args.img_size else []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=None,
                        help='timm names (default: DeiT III-S and -B on a CPU, -S, -B and -L on a GPU)')
    parser.add_argument('--rates', nargs='+', type=float, default=[0.1, 0.2, 0.45, 0.6])
    parser.add_argument('--batch', nargs='+', type=int, default=None,
                        help='images per step for each model (doubled by cosub); default 8 and 4 on a CPU, 64 '
                        'for each on a GPU')
    parser.add_argument('--variants', nargs='+', choices=VARIANTS, default=None,
                        help=f'default: {" ".join(CPU_VARIANTS)} on a CPU, all on a GPU')
    parser.add_argument('--img-size', type=int, default=None, help="input size (default: the model's)")
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--amp', action='store_true', help='bf16 autocast')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory probes')
    parser.add_argument('--memory-probe', nargs=3, metavar=('MODEL', 'RATE', 'VARIANT'), help=argparse.SUPPRESS)
    add_common_args(parser, 'cosub_step')
    args = parser.parse_args(argv)
    timing = apply_timing_args(args)
    device = torch.device(args.device)
    gpu = device.type == 'cuda'
    if args.models is None:
        args.models = ['deit3_small_patch16_224', 'deit3_base_patch16_224'] + (['deit3_large_patch16_224'] if gpu
                                                                               else [])
    if args.batch is None:
        args.batch = [64] * len(args.models) if gpu else [8, 4][:len(args.models)]
    if len(args.batch) == 1:
        args.batch = args.batch * len(args.models)
    if args.memory_probe:
        name, rate, variant = args.memory_probe
        print(json.dumps(dict(peak_bytes=measure_memory(name, float(rate), variant, args.batch[0], device, args.amp,
                                                         args.img_size))))
        return
    if len(args.batch) != len(args.models):
        parser.error(f'--batch: one value, or one per model ({len(args.models)})')
    variants = tuple(args.variants or (VARIANTS if gpu else CPU_VARIANTS))
    for needed in ('plain', 'reference', 'ours'):
        if needed not in variants:
            variants = (needed, ) + variants  # the ratios are to the first two, the targets are on the third
    variants = tuple(v for v in VARIANTS if v in variants)
    peak = peak_bf16_flops(device_name(device)) if gpu and args.amp else None

    rows = []
    for model_name, batch in zip(args.models, args.batch):
        for rate in args.rates:
            base = create(model_name, rate, args.img_size)
            flops = flops_per_pass(base)
            steps, compile_s = {}, {}
            for v in variants:
                model = configure(base, rate, v, device)
                forward = torch.compile(model) if v.endswith('compiled') else model
                steps[v] = make_step(model, v, batch, device, args.amp, forward=forward)
                if v.endswith('compiled'):  # compiles, and recompiles once for Bernoulli's varying row counts
                    start = time.perf_counter()
                    for _ in range(3):
                        steps[v]()
                    if gpu:
                        torch.cuda.synchronize(device)
                    compile_s[v] = round(time.perf_counter() - start, 1)
            del base
            times = time_round_robin(steps, repeats=args.repeats, warmup=1, device=device, clock=args.clock)
            row = dict(model=model_name, drop_rate=rate, batch=batch, gflops_per_image=round(flops['macs'] / 1e9, 3),
                       branch_share=round(flops['branch_share'], 4))
            for v in variants:
                row[f'{v}_s'] = times[v]
                row[f'{v}_img_s'] = batch / times[v]
                work = 6 * flops['macs'] * batch * executed_passes(v, rate, batch, flops['branch_share'])
                row[f'{v}_mfu'] = work / times[v] / peak if peak else None
            row.update({f'{v}_compile_s': s for v, s in compile_s.items()})
            if not args.no_memory:
                if gpu:  # exact in this process: the allocator's high-water mark above what is allocated
                    mem = {v: peak_step_bytes(steps[v], device) for v in variants}
                else:
                    mem = {v: memory_in_subprocess(osp.abspath(__file__),
                                                   memory_probe_args(args, model_name, rate, v, batch))
                           for v in variants}
                row.update({f'{v}_peak_bytes': mem[v] for v in variants})
                row.update({f'{v}_peak_mb': round(mem[v] / 2**20, 1) for v in variants})
            del steps
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
            row['reference_vs_plain'] = round(times['reference'] / times['plain'], 4)
            for v in (o for o in OURS if o in variants):
                prefix = '' if v == 'ours' else f'{v}_'
                row[f'{prefix}speedup_vs_reference'] = round(times['reference'] / times[v], 4)
                row[f'{prefix}cost_vs_plain'] = round(times[v] / times['plain'], 4)
                if not args.no_memory:
                    row[f'{prefix}memory_ratio_vs_reference'] = round(mem[v] / mem['reference'], 4)
            for v in ('ours_ckpt', 'ours_mask_ckpt'):
                if v in variants:  # activation checkpointing against the same step without it (issue 16)
                    row[f'{v}_time_vs_ours'] = round(times[v] / times['ours'], 4)
                    if not args.no_memory:
                        row[f'{v}_memory_vs_ours'] = round(mem[v] / mem['ours'], 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    ours = [v for v in OURS if v in variants]
    columns = ['model', 'drop_rate', 'batch', 'variant', 'step_ms', 'img_s', 'mfu', 'vs_reference', 'vs_plain']
    if not args.no_memory:
        columns += ['peak_mb', 'memory_vs_reference']
    table = []
    for row in rows:
        for v in variants:
            prefix = '' if v == 'ours' else f'{v}_'
            table.append(dict(model=row['model'], drop_rate=row['drop_rate'], batch=row['batch'], variant=v,
                              step_ms=row[f'{v}_s'] * 1e3, img_s=row[f'{v}_img_s'], mfu=row[f'{v}_mfu'],
                              vs_reference=row.get(f'{prefix}speedup_vs_reference', '') if v in ours else '',
                              vs_plain=(row.get(f'{prefix}cost_vs_plain', '') if v in ours else
                                        row['reference_vs_plain'] if v == 'reference' else ''),
                              peak_mb=row.get(f'{v}_peak_mb', ''),
                              memory_vs_reference=(row.get(f'{prefix}memory_ratio_vs_reference', '') if v in ours
                                                   else '')))
    print_table(table, columns, f'cosub training step (forward + backward + LAMB), {device_name(device)}'
                f'{", bf16 autocast" if args.amp else ", fp32"}, {timing}; batch = images before doubling; '
                'vs_reference: speed-up over the reference step; vs_plain: time / a plain step; mfu: of the '
                'dense bf16 peak')
    print('\n'.join([''] + targets(rows, gpu)))
    write_json('cosub_step', rows, dict(device=device_name(device), timing=timing, amp='bf16' if args.amp else 'fp32',
                                        repeats=args.repeats, variants=list(variants),
                                        peak_bf16_tflops=peak / 1e12 if peak else None), args.out)


def targets(rows, gpu: bool):
    """The issue's targets, met or missed: issue 12's on a GPU (bf16, H100), issue 4's on a CPU."""
    lines = ['targets of issue 12 (one H100, bf16):' if gpu else 'targets of issue 4 (CPU):']
    for row in rows:
        p, name = row['drop_rate'], f"{row['model']} p={row['drop_rate']}"
        checks = []
        if gpu:
            if p == 0.45 and 'large' in row['model']:
                checks += [('ours <= 1.15x a plain step', row['cost_vs_plain'] <= 1.15),
                           ('ours >= 1.6x faster than reference', row['speedup_vs_reference'] >= 1.6)]
            if 'base' in row['model'] and row.get('plain_mfu') is not None:
                checks.append(('plain step >= 40% model FLOP utilisation', row['plain_mfu'] >= 0.4))
        else:
            checks.append(('never >3% slower than reference', row['speedup_vs_reference'] >= 0.97))
            if p == 0.45:
                checks += [('>= 1.5x faster than reference', row['speedup_vs_reference'] >= 1.5),
                           ('<= 1.2x a plain step', row['cost_vs_plain'] <= 1.2)]
                if 'memory_ratio_vs_reference' in row:
                    checks.append(('peak memory <= 0.7x reference', row['memory_ratio_vs_reference'] <= 0.7))
            if p == 0.2:
                checks.append(('>= 1.15x faster than reference', row['speedup_vs_reference'] >= 1.15))
        lines += [f"{'met ' if ok else 'MISS'}  {name}: {text}" for text, ok in checks]
    return lines


if __name__ == '__main__':
    main()
