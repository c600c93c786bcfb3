"""What only a training or evaluation run needs: launching, distributed set-up, atomic checkpoints and resume, the
hooks that make runs exact and safe (preemption included), the checked training data, the console, and the
process-wide patches.

Nothing in :mod:`cosub_seg.cosub`, :mod:`cosub_seg.models` or :mod:`cosub_seg.datasets` imports this package (see
ARCHITECTURE.md). Importing it registers its hooks, samplers and datasets in MMEngine's root registries; it does not
call :func:`install` (the process-wide changes), which the tools and the configs do.
"""
from .checked_data import BadSampleError, CheckedDataset, Draw, ReproducibleSampler
from .checkpointing import AtomicLocalBackend, SafeCheckpointHook, atomic_write, find_resumable_checkpoint
from .console import CompactLogProcessor, CosubRunner, build_runner
from .dist import setup_distributed, teardown_distributed
from .hooks import (CheckpointFitHook, ExactResumeHook, GlobalMeanLogHook, NonFiniteLossHook, ProgressBarHook,
                    SkippedSampleLogHook, StepEMAHook)
from .patches import install, is_installed
from .preemption import PREEMPTED_EXIT_STATUS, PreemptionHook, TrainingPreempted, preempted_marker
from .split_checks import SplitCheckHook, check_class_counts, check_split, check_split_configs

__all__ = [
    'install', 'is_installed', 'BadSampleError', 'CheckedDataset', 'Draw', 'ReproducibleSampler', 'AtomicLocalBackend',
    'SafeCheckpointHook', 'atomic_write', 'find_resumable_checkpoint', 'CompactLogProcessor', 'CosubRunner',
    'build_runner', 'setup_distributed', 'teardown_distributed', 'CheckpointFitHook', 'ExactResumeHook',
    'GlobalMeanLogHook', 'NonFiniteLossHook', 'ProgressBarHook', 'SkippedSampleLogHook', 'StepEMAHook',
    'SplitCheckHook', 'check_class_counts', 'check_split', 'check_split_configs', 'PREEMPTED_EXIT_STATUS',
    'PreemptionHook', 'TrainingPreempted', 'preempted_marker'
]
