"""Activation checkpointing of a timm model's residual blocks, composed with stochastic depth that skips rows.

``set_activation_checkpointing(model)`` makes every residual block (the modules holding a stochastic-depth slot,
:func:`~cosub_seg.models.stochastic_depth.stochastic_depth_slots`: ViT, DeiT III, PiT and XCiT blocks, Swin,
ConvNeXt and RegNet blocks) keep only its input during the forward pass and run again in the backward pass
(``torch.utils.checkpoint``, non-reentrant). The recomputation must drop the rows the forward pass dropped:
``preserve_rng_state=True`` restores the random state of the CPU and of the input's device before it, so the
block draws the same kept rows (:class:`~cosub_seg.cosub.stochastic_depth.StochasticDepth` draws with
``torch.rand`` / ``torch.randperm`` on the input's device). It works the same for cosub's k copies, which are rows
of one batch.

Unlike timm's ``set_grad_checkpointing`` (missing for PiT, and not applied by every family's
``forward_intermediates``), this covers the six families in both stages. Checkpointing is active in training mode
with gradients enabled; evaluation runs the blocks once. BatchNorm layers in training mode (RegNet's blocks, the
segmentation heads' ConvModules) keep the running statistics of the forward pass: the recomputation's update is undone,
so a checkpointed step leaves them as an ordinary step does.

``set_head_checkpointing(head)`` does the same for each ConvModule (convolution, norm, activation) of an mmseg
decode head: in UperNet the head's activations at stride 4 are most of a training step's memory, and backbone
checkpointing leaves them alone (docs/benchmarks.md). The unit is the ConvModule, not the head: a head checkpointed
as one unit would recompute all its activations at once in the backward pass, and the peak would hardly move.
"""
import contextlib
from typing import Dict, Iterator, List, Type

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from .stochastic_depth import stochastic_depth_slots

_CHECKPOINTED: Dict[type, type] = {}


@contextlib.contextmanager
def _running_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Restores the running statistics of ``module``'s BatchNorm layers in training mode on exit."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    saved = [[buffer.clone() for buffer in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


def _checkpointed_class(cls: Type[nn.Module]) -> Type[nn.Module]:
    """A subclass of ``cls`` whose forward is checkpointed (one per block class; state dicts are unchanged)."""
    if cls in _CHECKPOINTED.values():
        return cls
    if cls not in _CHECKPOINTED:
        def forward(self, *args, **kwargs):
            plain = super(checkpointed, self).forward
            if not (self.training and torch.is_grad_enabled()):
                return plain(*args, **kwargs)
            runs = []

            def run(*args, **kwargs):
                if not runs:  # the forward pass
                    runs.append(True)
                    return plain(*args, **kwargs)
                with _running_statistics_kept(self):  # the recomputation: the forward pass updated them already
                    return plain(*args, **kwargs)

            return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)

        checkpointed = type(f'Checkpointed{cls.__name__}', (cls, ), dict(forward=forward, __module__=__name__))
        _CHECKPOINTED[cls] = checkpointed
    return _CHECKPOINTED[cls]


def residual_blocks(model: nn.Module):
    """The modules holding a stochastic-depth slot, in order, each once."""
    return list({id(parent): parent for parent, _ in stochastic_depth_slots(model)}.values())


def _set_checkpointing(modules: List[nn.Module], enable: bool) -> int:
    for module in modules:
        cls = type(module)
        base = next((plain for plain, wrapped in _CHECKPOINTED.items() if wrapped is cls), cls)
        module.__class__ = _checkpointed_class(base) if enable else base
    return len(modules)


def set_activation_checkpointing(model: nn.Module, enable: bool = True) -> int:
    """Turns activation checkpointing of ``model``'s residual blocks on (or back off); returns how many blocks."""
    return _set_checkpointing(residual_blocks(model), enable)


def head_units(head: nn.Module) -> List[nn.Module]:
    """The ConvModules of an mmseg decode head, outermost first (one nested in another is not counted again)."""
    from mmcv.cnn import ConvModule
    units: List[nn.Module] = []
    for module in head.modules():
        if isinstance(module, ConvModule) and not any(module in list(unit.modules()) for unit in units):
            units.append(module)
    return units


def set_head_checkpointing(head: nn.Module, enable: bool = True) -> int:
    """Turns activation checkpointing of each ConvModule of ``head`` on (or back off); returns how many."""
    return _set_checkpointing(head_units(head), enable)


__all__ = ['set_activation_checkpointing', 'set_head_checkpointing', 'head_units', 'residual_blocks']
