"""Distributed set-up that also works on machines without a GPU.

MMEngine's ``init_dist`` calls ``torch.cuda.set_device`` and fails on a CPU-only machine. Without CUDA we start a
gloo process group ourselves before the Runner is built (the Runner then keeps it) and ask for a DDP wrapper without
device ids (or keep a sharded run's FSDP wrapper); with CUDA nothing changes and MMEngine starts NCCL as usual.
"""
import datetime
import logging
import os
import subprocess
import sys

import torch
import torch.distributed as dist
from mmengine.config import Config

from ..errors import ConfigError
from .sharded import wants_fsdp


def _slurm_env_to_torch_env() -> None:
    """Fills torch's env:// variables from slurm's, as MMEngine does for GPU jobs."""
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.check_output(
            ['scontrol', 'show', 'hostnames', nodes], text=True).split()[0]
    os.environ.setdefault('MASTER_PORT', '29500')


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Prepares ``cfg`` and the process group for ``launcher`` ('none', 'pytorch' or 'slurm')."""
    if launcher not in ('none', 'pytorch', 'slurm'):
        raise ConfigError(f'launcher must be "none", "pytorch" or "slurm", got {launcher!r}')
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher == 'slurm':
        _slurm_env_to_torch_env()
    if not dist.is_initialized():
        # The same timeout MMEngine gives NCCL from env_cfg.dist_cfg.timeout (seconds): a collective waiting for a
        # process that died fails after it instead of hanging.
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout')
        kwargs = dict(timeout=datetime.timedelta(seconds=timeout)) if timeout else {}
        dist.init_process_group(backend='gloo', **kwargs)
    if not wants_fsdp(cfg):  # a sharded run keeps its wrapper (CosubRunner gives it the CPU as its device)
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)
    cfg.sync_bn = None


def teardown_distributed(exit_status: int = 0) -> None:
    """Ends a distributed run: every rank waits for the others, destroys the process group and leaves at once with
    ``exit_status`` (a preempted run: :data:`cosub_seg.runtime.preemption.PREEMPTED_EXIT_STATUS`).

    With gloo on CPUs, letting the interpreter finalise after that sometimes aborted a rank ("terminate called
    without an active exception", SIGABRT from a C++ thread torn down at exit once rank 0's store was gone), which
    torchrun reports as a failed job although training had finished. So, after flushing logs and output, a
    distributed run exits with ``os._exit(exit_status)``. A run without a process group returns normally.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_status)
