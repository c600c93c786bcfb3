"""What the benchmarks share: interleaved timing, peak memory, a table on stdout and JSON under bench/results/.

Timings on shared machines are noisy, so every benchmark times its variants side by side, round-robin, in one
process, and reports ratios of medians rather than absolute times.
"""
import json
import os
import os.path as osp
import platform
import resource
import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch

RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'results')


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_round_robin(fns: Dict[str, Callable[[], None]], repeats: int, warmup: int = 1,
                     device: torch.device = torch.device('cpu'), clock: str = 'wall') -> Dict[str, float]:
    """Median seconds per call of each function, calling them in turn (a, b, c, a, b, c, ...) so that a change in
    machine load hits every variant alike.

    ``clock='cpu'`` measures this process's CPU time instead of wall time: with one thread
    (``torch.set_num_threads(1)``) it hardly depends on what else the machine runs, which makes ratios on a busy
    shared machine trustworthy (wall time is the default and what a user sees)."""
    now = time.perf_counter if clock == 'wall' else time.process_time
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = now()
            fn()
            sync(device)
            times[name].append(now() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def add_timing_args(parser) -> None:
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores)')
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                        help="'cpu': process CPU time, robust on a busy machine with --threads 1")


def apply_timing_args(args) -> str:
    """Sets the thread count; returns a description of the timing for the table and the JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return f'{args.clock} clock, {torch.get_num_threads()} thread(s)'


def rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss_bytes() -> int:
    """Highest resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads'


def print_table(rows: List[dict], columns: Sequence[str], title: str) -> None:
    def fmt(value):
        if isinstance(value, float):
            return f'{value:.3f}' if abs(value) < 100 else f'{value:.1f}'
        return str(value)

    cells = [[fmt(row.get(col, '')) for col in columns] for row in rows]
    widths = [max(len(col), *(len(c[i]) for c in cells)) for i, col in enumerate(columns)]
    print(f'\n{title}')
    print(' | '.join(col.ljust(w) for col, w in zip(columns, widths)))
    print('-+-'.join('-' * w for w in widths))
    for c in cells:
        print(' | '.join(v.ljust(w) for v, w in zip(c, widths)))


def write_json(name: str, rows: List[dict], meta: dict) -> str:
    """Writes ``bench/results/<name>.json``: a list of the rows, each with ``meta`` (device, torch version, date,
    settings) merged in, so every row says where it was measured; returns the path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = osp.join(RESULTS, f'{name}.json')
    meta = dict(meta, torch=torch.__version__, date=time.strftime('%Y-%m-%d %H:%M'))
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump([dict(row, **meta) for row in rows], f, indent=1)
    os.replace(tmp, path)
    print(f'\nwrote {path}')
    return path
