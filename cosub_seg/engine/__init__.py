"""What composes a recipe's optimisation: optimiser constructors (the weight-decay rule, layer-wise lr decay) and
optimiser wrappers. Run-time machinery (launching, checkpoints, hooks) is in :mod:`cosub_seg.runtime`."""
from .layer_decay import LayerDecayOptimWrapperConstructor, backbone_layer_ids
from .optimizers import AutocastOptimWrapper, NoDecayOptimWrapperConstructor, no_weight_decay_names

__all__ = [
    'AutocastOptimWrapper', 'NoDecayOptimWrapperConstructor', 'no_weight_decay_names',
    'LayerDecayOptimWrapperConstructor', 'backbone_layer_ids'
]
