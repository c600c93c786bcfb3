r"""Parameters, FLOPs and throughput of the backbone and the whole model of a pretraining or segmentation config.

FLOPs: fvcore's convention (one multiply-add = 1; what papers quote), attention included; a segmentor is measured
on its inference path (backbone, neck, decode head at the head's output resolution), as mmseg's get_flops does.

Examples:
    cosub-analyze-model configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py            # at the 512x512 crop
    cosub-analyze-model configs/pretrain/cosub_deit3-small_in1k.py --shape 224
    cosub-analyze-model configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py --throughput --device cuda \
        --batch-size 16 --amp
    # peak memory of one training step (per process, the config's batch per GPU), with and without checkpointing
    cosub-analyze-model configs/pretrain/cosub_deit3-huge_in1k.py --memory --amp
    cosub-analyze-model configs/pretrain/cosub_deit3-huge_in1k.py --memory --amp \
        --cfg-options model.grad_checkpointing=False

--memory estimates the peak memory of one training step without running it (fake tensors, torch's MemTracker; no
GPU needed): parameters, gradients, optimiser state, EMA copy, and what the forward and backward passes keep, for
--batch-size images per process (default: the config's train_dataloader.batch_size). Not counted: the CUDA context
and library workspaces (~0.5-1 GiB) and the allocator's fragmentation; leave 10-15 % of a card free.
"""
import argparse
import json

from mmengine.config import DictAction

from cosub_seg.analysis import GIB, analyze, estimate_training_memory, throughput
from cosub_seg.cli import tool
from cosub_seg.errors import DEBUG_HELP


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='pretraining or segmentation config')
    parser.add_argument('--shape', type=int, nargs='+', metavar='SIZE',
                        help="input H [W] (default: the seg config's crop, or the classifier's img_size)")
    parser.add_argument('--throughput', action='store_true', help='also time inference (images/s)')
    parser.add_argument('--memory', action='store_true',
                        help='also estimate the peak memory of one training step (see above)')
    parser.add_argument('--gpu-memory', type=float, default=80.0, metavar='GIB',
                        help='the card --memory compares the estimate with (default: 80 GiB)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help="batch of the throughput measurement (default 8) and of --memory (default: the config's "
                        'train batch per GPU)')
    parser.add_argument('--device', default='cpu', help="where to time it: 'cpu', 'cuda', 'cuda:1'")
    parser.add_argument('--warmup', type=int, default=3, help='untimed forward passes first')
    parser.add_argument('--iters', type=int, default=10, help='timed forward passes')
    parser.add_argument('--amp', action='store_true', help='time (and estimate memory) under autocast (fp16 on a GPU, '
                        'bf16 on a CPU)')
    parser.add_argument('--out', help='also write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    return args


MEMORY_KINDS = dict(param='parameters and buffers', grad='gradients', opt='optimiser state', ema='EMA copy',
                   act='activations (kept for the backward pass)', temp='backward temporaries')


def memory_table(memory: dict, gpu_gib: float) -> str:
    """The --memory estimate as a table, and whether it fits a card of ``gpu_gib`` GiB with 10 % left free."""
    kinds = dict(memory['peak_by_kind'])
    kinds['param'] = kinds.get('param', 0) + kinds.pop('buffer', 0)
    lines = [f'peak training memory, one process, batch {memory["batch_size"]} at {memory["input_size"][0]}x'
             f'{memory["input_size"][1]}{", amp" if memory["amp"] else ""}, {memory["optimizer"]}, activation '
             f'checkpointing {"on" if memory["grad_checkpointing"] else "off"}'
             f'{", head checkpointing on" if memory.get("head_checkpointing") else ""} (estimate, fake tensors):']
    for kind, words in MEMORY_KINDS.items():
        if kinds.get(kind):
            lines.append(f'  {words:<44}{kinds[kind] / GIB:>9.2f} GiB')
    total = memory['peak_bytes'] / GIB
    verdict = 'fits' if total <= 0.9 * gpu_gib else 'does not fit'
    lines.append(f'  {"peak":<44}{total:>9.2f} GiB: {verdict} a {gpu_gib:g} GiB card with 10 % left free')
    if memory['stochastic_depth_expected_rows']:
        lines.append('  (stochastic depth counted with its expected number of dropped rows)')
    return '\n'.join(lines)


@tool
def main(argv=None):
    args = parse_args(argv)
    size = None if args.shape is None else (args.shape[0], args.shape[-1])
    result = analyze(args.config, size, args.cfg_options)
    h, w = result['input_size']
    print(f'{args.config} at {h}x{w} (FLOPs: one multiply-add = 1)')
    print(f'{"part":<32}{"params (M)":>12}{"GFLOPs":>10}')
    for name, part in result['parts'].items():
        flops = f'{part["flops"] / 1e9:.3f}' if 'flops' in part else '-'
        print(f'{name:<32}{part["params"] / 1e6:>12.3f}{flops:>10}')
    not_counted = sorted({op for part in result['parts'].values() for op in part.get('not_counted', [])})
    if not_counted:
        print(f'not counted (element-wise, by convention): {", ".join(not_counted)}')
    if args.memory:
        batch = args.batch_size or result['train_batch_size']
        memory = estimate_training_memory(args.config, batch, size, args.amp, args.cfg_options)
        result['memory'] = memory
        print(memory_table(memory, args.gpu_memory))
    if args.throughput:
        speed = throughput(args.config, args.batch_size or 8, size, args.device, args.warmup, args.iters, args.amp,
                           args.cfg_options)
        result['throughput'] = speed
        print(f'throughput on {args.device}, batch {args.batch_size}{", amp" if args.amp else ""}: ' + ', '.join(
            f'{name} {ips:.1f} images/s' for name, ips in speed['images_per_s'].items()))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
