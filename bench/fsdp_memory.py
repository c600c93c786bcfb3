"""Memory per process of sharded (FSDP) vs replicated (DDP) training, 2 processes, measured side by side.

Each variant is a real 2-process job (torchrun, gloo on a CPU, NCCL on GPUs) training a cosub classifier (k = 2
copies) with AdamW for a few steps, wrapped as the training tools wrap it: MMEngine's ``MMDistributedDataParallel``,
or ``MMFullyShardedDataParallel`` with every residual block a unit and the rest in units below the root
(``--fsdp``, ``cosub_seg/runtime/sharded.py``). Each process reports what it holds (its parameters, gradients and
optimiser moments: the tensors' bytes, a shared storage counted once; not DDP's gradient buckets, the reducer's own
copy of the gradients), its peak resident memory (CPU, with the libraries' ~1 GiB) or peak allocated CUDA memory
(GPU), and the median step time, as a ratio on a CPU (gloo on one machine is not a cluster's network).

    python bench/fsdp_memory.py [--arch deit3_base_patch16_224] [--batch 2] [--steps 3] [--out JSON]
"""
import argparse
import functools
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import MALLOC_ENV, environment, peak_rss_bytes, print_table, write_json  # noqa: E402

MIB = 2**20


def _storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views of one flat parameter count once)."""
    seen = {}
    for t in tensors:
        if t is None or t.numel() == 0:
            continue
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def worker(args) -> None:
    import torch
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel, MMFullyShardedDataParallel
    from mmengine.optim import OptimWrapper
    from mmengine.structures import BaseDataElement

    import cosub_seg  # noqa: F401
    from cosub_seg.models.classifier import CosubClassifier
    from cosub_seg.runtime.sharded import residual_block_wrap_policy

    cuda = torch.cuda.is_available()
    dist.init_process_group('nccl' if cuda else 'gloo')
    rank = dist.get_rank()
    device = torch.device('cuda', int(os.environ['LOCAL_RANK'])) if cuda else torch.device('cpu')
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = CosubClassifier(args.arch, num_classes=1000, num_submodels=2,
                            stochastic_depth=dict(rate=0.1, compute='skip')).to(device)
    if args.mode == 'ddp':
        wrapped = MMDistributedDataParallel(model, device_ids=[device.index] if cuda else None,
                                            broadcast_buffers=False)
    else:
        policy = functools.partial(residual_block_wrap_policy, top=frozenset(id(c) for c in model.children()))
        wrapped = MMFullyShardedDataParallel(model, auto_wrap_policy=policy, use_orig_params=True, device_id=device)
    optim_wrapper = OptimWrapper(torch.optim.AdamW(wrapped.parameters(), lr=1e-4, weight_decay=0.05))
    images = torch.randn(args.batch, 3, 224, 224)
    data = dict(inputs=images, data_samples=[BaseDataElement(gt_label=torch.tensor([i % 1000]))
                                             for i in range(args.batch)])

    def step():
        batch = dict(inputs=data['inputs'].to(device), data_samples=data['data_samples'])
        wrapped.train_step({'inputs': batch['inputs'], 'data_samples': batch['data_samples']}, optim_wrapper)

    times = []
    for i in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    # The gradients exist from the backward pass to the optimiser step (which frees them): one more backward pass,
    # without a step, to count them.
    losses = wrapped(data['inputs'].to(device), data['data_samples'], mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    params = list(wrapped.parameters())
    held = dict(
        params=_storage_bytes(params),
        grads=_storage_bytes([p.grad for p in params]),
        optimizer=_storage_bytes([t for state in optim_wrapper.optimizer.state.values() for t in state.values()
                                  if torch.is_tensor(t) and t.dim() > 0]),
    )
    result = dict(mode=args.mode, rank=rank, step_s=statistics.median(times[1:] or times), **held,
                  held_bytes=sum(held.values()),
                  peak_bytes=torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes(),
                  peak_kind='cuda max allocated' if cuda else 'peak RSS')
    with open(f'{args.result}.{rank}', 'w') as f:
        json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='deit3_base_patch16_224')
    parser.add_argument('--batch', type=int, default=2, help='images per process (x2 cosub copies)')
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--out', default=None, help='JSON (default bench/results/fsdp_memory.json)')
    parser.add_argument('--mode', choices=['ddp', 'fsdp'], help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:
        return worker(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for port, mode in ((29581, 'ddp'), (29582, 'fsdp')):
            result = osp.join(tmp, mode)
            command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
                       str(port), osp.abspath(__file__), '--mode', mode, '--result', result, '--arch', args.arch,
                       '--batch', str(args.batch), '--steps', str(args.steps)]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                  env=dict(os.environ, OMP_NUM_THREADS='1', **MALLOC_ENV))
            if done.returncode != 0:
                raise SystemExit(f'{mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}')
            for rank in (0, 1):
                with open(f'{result}.{rank}') as f:
                    rows.append(json.load(f))
    ddp_held = statistics.mean(r['held_bytes'] for r in rows if r['mode'] == 'ddp')
    ddp_step = statistics.mean(r['step_s'] for r in rows if r['mode'] == 'ddp')
    table = []
    for r in rows:
        table.append(dict(
            variant=f"{r['mode']} rank {r['rank']}",
            params_MiB=round(r['params'] / MIB), grads_MiB=round(r['grads'] / MIB),
            optimizer_MiB=round(r['optimizer'] / MIB),
            held_MiB=round(r['held_bytes'] / MIB), held_vs_ddp=round(r['held_bytes'] / ddp_held, 3),
            peak_MiB=round(r['peak_bytes'] / MIB), peak_kind=r['peak_kind'],
            step_vs_ddp=round(r['step_s'] / ddp_step, 2)))
    title = (f'{args.arch}, cosub k=2, AdamW, {args.batch} images x 2 copies per process, 2 processes '
             f'({"NCCL" if environment().get("gpu") else "gloo, CPU"})')
    print_table(table, list(table[0]), title)
    meta = dict(arch=args.arch, batch_per_process=args.batch, steps=args.steps, processes=2,
                command='python bench/fsdp_memory.py ' + ' '.join(argv if argv is not None else sys.argv[1:]))
    path = write_json('fsdp_memory', table, meta, args.out)
    print(json.dumps(table, indent=1))
    print(f'written: {path}')


if __name__ == '__main__':
    main()
