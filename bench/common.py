"""What the benchmarks share: interleaved timing, peak memory, a table on stdout and JSON under bench/results/ (or
``--out``), with the machine it ran on (GPU or CPU model, torch, CUDA and cuDNN versions).

Timings on shared machines are noisy, so every benchmark times its variants side by side, round-robin, in one
process, and reports ratios of medians rather than absolute times (absolute figures too on a GPU).
"""
import gc
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

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


def add_common_args(parser, name: str) -> None:
    """``--device`` (default: cuda where there is one), ``--out`` (the JSON) and the timing options."""
    parser.add_argument('--device', default=default_device(), help='default: cuda where available, else cpu')
    parser.add_argument('--out', default=None, help=f'JSON to write (default: bench/results/{name}.json)')
    add_timing_args(parser)


def default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


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


def peak_step_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes one call of ``step`` holds above what was held before it. On a GPU, the caching allocator's
    high-water mark of allocated bytes (exact, and other models in the process do not count); on a CPU, the highest
    resident set size during the call above the resting size, polled every 0.5 ms and taken from the kernel's
    high-water mark where that rose: run it in a fresh process (:func:`memory_in_subprocess`) with glibc told to
    return freed blocks (``MALLOC_*`` below), so that RSS follows live memory."""
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
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


# glibc returns freed blocks of 64 KiB and more to the system, so RSS follows live memory in a memory probe.
MALLOC_ENV = dict(MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='65536')


def memory_in_subprocess(script: str, args: Sequence[str]) -> int:
    """Runs ``python script *args`` in a fresh process (with :data:`MALLOC_ENV`) and returns the ``peak_bytes`` of
    the JSON object on the last line of its output (what a script's memory probe prints)."""
    out = subprocess.run([sys.executable, script, *args], env=dict(os.environ, **MALLOC_ENV), capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f'memory probe {script} {" ".join(args)} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])['peak_bytes']


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module says."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{cpu_model()} ({os.cpu_count()} cores)'


def environment() -> dict:
    """Where a result was measured: the GPU (None without one), the CPU model and cores, torch with the CUDA and
    cuDNN versions it was built with, Python, the date."""
    return dict(gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                cpu=f'{cpu_model()} ({os.cpu_count()} cores)', torch=torch.__version__, cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                python=platform.python_version(), date=time.strftime('%Y-%m-%d %H:%M'))


def cuda_flags() -> dict:
    """The TF32 switches, which change both speed and numbers of fp32 runs on a GPU (torch's defaults: off for
    matrix products, on for cuDNN convolutions)."""
    return dict(matmul_tf32=torch.backends.cuda.matmul.allow_tf32, cudnn_tf32=torch.backends.cudnn.allow_tf32)


def print_table(rows: List[dict], columns: Sequence[str], title: str) -> None:
    def fmt(value):
        if value is None:
            return 'n/a'
        if isinstance(value, float) and 0 < abs(value) < 0.01:
            return f'{value:.3g}'
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


def write_json(name: str, rows: List[dict], meta: dict, out: Optional[str] = None) -> str:
    """Writes ``out`` (default ``bench/results/<name>.json``): a list of the rows, each with ``meta`` (device,
    settings) and :func:`environment` (GPU, CPU, torch / CUDA / cuDNN versions, date) merged in, so every row says
    where it was measured; returns the path."""
    path = out or osp.join(RESULTS, f'{name}.json')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    meta = dict(meta, **environment())
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump([dict(row, **meta) for row in rows], f, indent=1)
    os.replace(tmp, path)
    print(f'\nwrote {path}')
    return path
