from .checkpointing import AtomicLocalBackend, SafeCheckpointHook, atomic_write, find_resumable_checkpoint
from .console import CompactLogProcessor, CosubRunner, build_runner
from .dist import setup_distributed, teardown_distributed
from .hooks import CheckpointFitHook, ExactResumeHook, NonFiniteLossHook, SkippedSampleLogHook
from .layer_decay import LayerDecayOptimWrapperConstructor, backbone_layer_ids
from .optimizers import AutocastOptimWrapper, NoDecayOptimWrapperConstructor, no_weight_decay_names
from .progress import ProgressBarHook

__all__ = [
    'setup_distributed', 'teardown_distributed', 'AutocastOptimWrapper', 'NoDecayOptimWrapperConstructor',
    'no_weight_decay_names', 'LayerDecayOptimWrapperConstructor', 'backbone_layer_ids', 'AtomicLocalBackend',
    'SafeCheckpointHook', 'atomic_write', 'find_resumable_checkpoint', 'CheckpointFitHook', 'ExactResumeHook',
    'NonFiniteLossHook', 'SkippedSampleLogHook', 'ProgressBarHook', 'CompactLogProcessor', 'CosubRunner', 'build_runner'
]
