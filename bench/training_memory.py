"""Estimated peak training memory per GPU of the big recipes, with and without activation checkpointing.

Runs :func:`cosub_seg.analysis.estimate_training_memory` (``tools/analyze_model.py --memory``: one training step on
fake tensors, tracked by torch's MemTracker; no GPU needed) over the cases below, side by side: parameters,
gradients, optimiser state, EMA, activations and the peak, in GiB, and whether the peak fits an 80 GB card with 10 %
left free. These are estimates of what torch allocates (no CUDA context, workspaces or fragmentation), to choose a
recipe's memory options before renting the GPUs; tests/test_gpu.py checks them against a real CUDA step.

    python bench/training_memory.py [--cases huge-ckpt huge ...] [--out bench/results/training_memory.json]
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from bench.common import print_table, write_json  # noqa: E402

HUGE = 'configs/pretrain/cosub_deit3-huge_in1k.py'
BASE = 'configs/pretrain/cosub_deit3-base_in1k.py'
LARGE_640 = 'configs/seg/upernet_cosub-deit3-large_ade20k-640x640.py'
# name -> (config, batch per GPU, amp, --cfg-options)
CASES = {
    'deit3-base': (BASE, 64, True, {}),
    'huge-ckpt': (HUGE, 64, True, {}),
    'huge': (HUGE, 64, True, {'model.grad_checkpointing': False}),
    'large-640': (LARGE_640, 2, False, {}),
    'large-640-cosub': (LARGE_640, 2, False, {'model.num_submodels': 2}),
    'large-640-b8': (LARGE_640, 8, False, {}),
    'large-640-b8-ckpt': (LARGE_640, 8, False, {'model.backbone.grad_checkpointing': True}),
}
GIB = 2**30


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cases', nargs='+', choices=list(CASES), default=list(CASES))
    parser.add_argument('--gpu-memory', type=float, default=80.0, help='card size in GiB (default 80)')
    parser.add_argument('--out', default=None, help='JSON to write (default: bench/results/training_memory.json)')
    args = parser.parse_args(argv)
    import cosub_seg.runtime
    from cosub_seg.analysis import estimate_training_memory
    cosub_seg.runtime.install()
    rows = []
    for name in args.cases:
        config, batch, amp, options = CASES[name]
        start = time.time()
        memory = estimate_training_memory(config, batch, amp=amp, cfg_options=options or None)
        kinds = memory['peak_by_kind']
        peak = memory['peak_bytes'] / GIB
        rows.append(dict(case=name, config=config, batch=batch, amp=amp, options=options,
                         checkpointing=memory['grad_checkpointing'], params_M=memory['params'] / 1e6,
                         weights_GiB=(kinds['param'] + kinds.get('buffer', 0)) / GIB, grads_GiB=kinds['grad'] / GIB,
                         optimizer_GiB=kinds['opt'] / GIB, ema_GiB=kinds['ema'] / GIB,
                         activations_GiB=kinds['act'] / GIB, temporaries_GiB=kinds['temp'] / GIB, peak_GiB=peak,
                         fits=peak <= 0.9 * args.gpu_memory, estimate_s=time.time() - start,
                         peak_bytes=memory['peak_bytes']))
        print(f'{name}: peak {peak:.1f} GiB ({time.time() - start:.0f} s)', flush=True)
    print_table(rows, ['case', 'batch', 'amp', 'checkpointing', 'params_M', 'weights_GiB', 'grads_GiB',
                       'optimizer_GiB', 'ema_GiB', 'activations_GiB', 'peak_GiB', 'fits'],
                f'estimated peak training memory per GPU (fits: <= 90 % of {args.gpu_memory:g} GiB)')
    return write_json('training_memory', rows, dict(gpu_memory_GiB=args.gpu_memory, method='fake tensors + '
                                                     'torch.distributed._tools.mem_tracker.MemTracker'), args.out)


if __name__ == '__main__':
    main()
