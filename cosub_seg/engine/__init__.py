from .dist import setup_distributed, teardown_distributed
from .optimizers import AutocastOptimWrapper, NoDecayOptimWrapperConstructor, no_weight_decay_names
from .runner import CosubRunner

__all__ = [
    'setup_distributed', 'teardown_distributed', 'AutocastOptimWrapper', 'NoDecayOptimWrapperConstructor',
    'no_weight_decay_names', 'CosubRunner'
]
