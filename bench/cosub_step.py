"""What a cosub training step costs: plain vs the reference cosub step vs ours, side by side.

For DeiT III-S and DeiT III-B at 224 and constant drop-path rates (the cosub recipes' schedule), one training step
(forward + backward + LAMB step, BCE cosub loss) of:

* (a) ``plain``: the batch once, timm's masked DropPath (ordinary training, no co-training);
* (b) ``reference``: the cosub step as the authors' code does it: the batch doubled, timm's masked DropPath;
* (c) ``ours``: the batch doubled, :mod:`cosub_seg.cosub.stochastic_depth` with ``compute='auto'`` (skipping).

All three share the initial weights; they are timed round-robin in one process (median of ``--repeats``). Peak
memory of a step is measured in a fresh process per variant: on a GPU ``torch.cuda.max_memory_allocated`` above
what is allocated before the step; on a CPU the highest resident set size during the step above the resting size
(glibc is told to return freed blocks of 64 KiB and more to the system, so RSS follows live memory).

    python bench/cosub_step.py [--models deit3_small_patch16_224 deit3_base_patch16_224] [--rates 0.1 0.2 0.45 0.6]
        [--batch 8 4] [--repeats 3] [--amp] [--no-memory]

Writes bench/results/cosub_step.json: rows with ``model``, ``drop_rate``, ``speedup_vs_reference`` (b / c time),
``memory_ratio_vs_reference`` (c / b peak memory), ``cost_vs_plain`` (c / a time) and the raw figures.
"""
import argparse
import gc
import json
import os
import os.path as osp
import subprocess
import sys
import threading
import time
from contextlib import nullcontext

import timm
import torch
from timm.layers import DropPath
from timm.optim import Lamb

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import add_timing_args, apply_timing_args, device_name, peak_rss_bytes, print_table, rss_bytes, time_round_robin, write_json  # noqa
from cosub_seg.cosub import cosub_loss  # noqa: E402
from cosub_seg.cosub import StochasticDepthConfig  # noqa: E402
from cosub_seg.models.stochastic_depth import configure_stochastic_depth, stochastic_depth_slots  # noqa: E402

VARIANTS = ('plain', 'reference', 'ours')
NUM_CLASSES = 1000


def build(model_name: str, rate: float, variant: str, device: torch.device, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(model_name, num_classes=NUM_CLASSES, drop_path_rate=rate)
    if variant == 'ours':
        configure_stochastic_depth(model, StochasticDepthConfig(rate, 'constant', compute='auto', sampling='bernoulli'))
    else:  # timm's own DropPath, at the constant rate of the cosub recipes
        for parent, name in stochastic_depth_slots(model):
            setattr(parent, name, DropPath(rate))
    return model.to(device).train()


def make_step(model, variant: str, batch: int, device: torch.device, amp: bool, optimizer=None):
    optimizer = optimizer or Lamb(model.parameters(), lr=1e-4, weight_decay=0.05)
    images = torch.randn(batch, 3, 224, 224, device=device)
    target = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    copies = 1 if variant == 'plain' else 2
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()

    def step():
        with autocast:
            logits = model(images.repeat(copies, 1, 1, 1) if copies > 1 else images)
        loss = cosub_loss(logits.float().view(copies, batch, -1), target).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def measure_memory(model_name, rate, variant, batch, device, amp) -> int:
    """Peak bytes of one step above the resting state, in this (fresh) process."""
    model = build(model_name, rate, variant, device)
    optimizer = Lamb(model.parameters(), lr=1e-4, weight_decay=0.05)
    # A step at batch 1 creates the optimiser state, so the measured step starts from a long run's resting state.
    make_step(model, variant, 1, device, amp, optimizer)()
    step = make_step(model, variant, batch, device, amp, optimizer)
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    rest, peak, done = rss_bytes(), [0], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.0005)
    before_max = peak_rss_bytes()
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    step()
    done.set()
    thread.join()
    after_max = peak_rss_bytes()
    top = max(peak[0], after_max if after_max > before_max else 0)
    return top - rest


def memory_in_subprocess(args, model_name, rate, variant) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='65536')
    cmd = [sys.executable, osp.abspath(__file__), '--memory-probe', model_name, str(rate), variant,
           '--device', args.device] + (['--amp'] if args.amp else []) + \
        (['--threads', str(args.threads)] if args.threads else [])
    batch = args.batch[args.models.index(model_name)]
    out = subprocess.run(cmd + ['--batch', str(batch)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])['peak_bytes']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['deit3_small_patch16_224', 'deit3_base_patch16_224'])
    parser.add_argument('--rates', nargs='+', type=float, default=[0.1, 0.2, 0.45, 0.6])
    parser.add_argument('--batch', nargs='+', type=int, default=None,
                        help='images per step for each model (doubled by cosub); default 8 and 4 on a CPU, 64 '
                        'and 32 on a GPU')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='bf16 autocast')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory probes')
    parser.add_argument('--memory-probe', nargs=3, metavar=('MODEL', 'RATE', 'VARIANT'), help=argparse.SUPPRESS)
    add_timing_args(parser)
    args = parser.parse_args(argv)
    timing = apply_timing_args(args)
    device = torch.device(args.device)
    if args.batch is None:
        args.batch = ([8, 4] if device.type == 'cpu' else [64, 32])[:len(args.models)]
    if len(args.batch) == 1:
        args.batch = args.batch * len(args.models)
    if args.memory_probe:
        name, rate, variant = args.memory_probe
        print(json.dumps(dict(peak_bytes=measure_memory(name, float(rate), variant, args.batch[0], device,
                                                         args.amp))))
        return

    rows = []
    for model_name, batch in zip(args.models, args.batch):
        for rate in args.rates:
            steps = {v: make_step(build(model_name, rate, v, device), v, batch, device, args.amp) for v in VARIANTS}
            times = time_round_robin(steps, repeats=args.repeats, warmup=1, device=device, clock=args.clock)
            del steps
            gc.collect()
            row = dict(model=model_name, drop_rate=rate, batch=batch,
                       **{f'{v}_s': round(times[v], 4) for v in VARIANTS})
            row['speedup_vs_reference'] = round(times['reference'] / times['ours'], 3)
            row['cost_vs_plain'] = round(times['ours'] / times['plain'], 3)
            row['reference_vs_plain'] = round(times['reference'] / times['plain'], 3)
            if not args.no_memory:
                mem = {v: memory_in_subprocess(args, model_name, rate, v) for v in VARIANTS}
                row.update({f'{v}_peak_mb': round(mem[v] / 2**20, 1) for v in VARIANTS})
                row['memory_ratio_vs_reference'] = round(mem['ours'] / mem['reference'], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    columns = ['model', 'drop_rate', 'batch', 'plain_s', 'reference_s', 'ours_s', 'speedup_vs_reference',
               'cost_vs_plain', 'reference_vs_plain']
    if not args.no_memory:
        columns += ['reference_peak_mb', 'ours_peak_mb', 'memory_ratio_vs_reference']
    print_table(rows, columns, f'cosub training step (forward + backward + LAMB), {device_name(device)}'
                f'{", bf16 autocast" if args.amp else ", fp32"}, {timing}; batch = images before doubling')
    targets = []
    for row in rows:
        p = row['drop_rate']
        checks = [('never >3% slower than reference', row['speedup_vs_reference'] >= 0.97)]
        if p == 0.45:
            checks += [('>= 1.5x faster than reference', row['speedup_vs_reference'] >= 1.5),
                       ('<= 1.2x a plain step', row['cost_vs_plain'] <= 1.2)]
            if 'memory_ratio_vs_reference' in row:
                checks.append(('peak memory <= 0.7x reference', row['memory_ratio_vs_reference'] <= 0.7))
        if p == 0.2:
            checks.append(('>= 1.15x faster than reference', row['speedup_vs_reference'] >= 1.15))
        for text, ok in checks:
            targets.append(f"{'met ' if ok else 'MISS'}  {row['model']} p={p}: {text}")
    print('\n'.join(['', 'targets of issue 4:'] + targets))
    write_json('cosub_step', rows, dict(device=device_name(device), timing=timing, amp='bf16' if args.amp else 'fp32',
                                        repeats=args.repeats))


if __name__ == '__main__':
    main()
