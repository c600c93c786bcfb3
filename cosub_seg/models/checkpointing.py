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
with gradients enabled; evaluation runs the blocks once. Known cost: a block with BatchNorm in training mode (RegNet)
updates its running statistics twice per step, once in the recomputation.
"""
from typing import Dict, Type

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .stochastic_depth import stochastic_depth_slots

_CHECKPOINTED: Dict[type, type] = {}


def _checkpointed_class(cls: Type[nn.Module]) -> Type[nn.Module]:
    """A subclass of ``cls`` whose forward is checkpointed (one per block class; state dicts are unchanged)."""
    if cls in _CHECKPOINTED.values():
        return cls
    if cls not in _CHECKPOINTED:
        def forward(self, *args, **kwargs):
            plain = super(checkpointed, self).forward
            if self.training and torch.is_grad_enabled():
                return checkpoint(plain, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)
            return plain(*args, **kwargs)

        checkpointed = type(f'Checkpointed{cls.__name__}', (cls, ), dict(forward=forward, __module__=__name__))
        _CHECKPOINTED[cls] = checkpointed
    return _CHECKPOINTED[cls]


def residual_blocks(model: nn.Module):
    """The modules holding a stochastic-depth slot, in order, each once."""
    return list({id(parent): parent for parent, _ in stochastic_depth_slots(model)}.values())


def set_activation_checkpointing(model: nn.Module, enable: bool = True) -> int:
    """Turns activation checkpointing of ``model``'s residual blocks on (or back off); returns how many blocks."""
    blocks = residual_blocks(model)
    for block in blocks:
        cls = type(block)
        base = next((plain for plain, wrapped in _CHECKPOINTED.items() if wrapped is cls), cls)
        block.__class__ = _checkpointed_class(base) if enable else base
    return len(blocks)


__all__ = ['set_activation_checkpointing', 'residual_blocks']
