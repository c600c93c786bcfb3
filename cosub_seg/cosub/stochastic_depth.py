"""Stochastic depth that does not pay for the rows it drops.

Stochastic depth (Huang et al., 2016; timm's ``DropPath``) drops a residual branch for a random subset of the rows of
a batch: ``x + mask * branch(x) / keep_prob``. Done that way, the branch still runs on every row and its activations
are kept for the backward pass, so a dropped row costs as much as a kept one. Cosub relies on high drop rates (ViT-B
0.2, ViT-L 0.45, ViT-H 0.6) and runs every image twice, so the waste is large. :class:`StochasticDepth` can instead
*skip*: select the rows that keep the branch, run the branch on those rows only, and add the result back into the
shortcut with the same scaling, ``shortcut.index_add(0, kept, branch(x[kept]), alpha=scale)``. With rate p a branch
then costs about (1 - p) of the masked version, in compute and in activation memory.

Masking and skipping give the same outputs and gradients for the same kept rows (rows are independent in every
branch except through BatchNorm: with skipping its batch statistics come from the kept rows only). Skipping pays a
gather and a scatter per branch, so below some rate (``SKIP_BREAK_EVEN``, measured by
``bench/stochastic_depth_breakeven.py``) masking is as fast; ``compute='auto'`` picks per branch from its rate.
On CUDA, 'auto' skips only with 'fixed' sampling: with 'bernoulli' the number of kept rows is known only after a
device-to-host sync, once per branch, and the batch shapes change from branch to branch. Measured on one H200
(bench/results/gpu/2026-11-26_h200/cosub_step_base_large.json: DeiT III-B, bf16, batch 64, p = 0.45), a cosub step
took 432 ms skipping with 'bernoulli', 102 ms masking (timm's DropPath), 81 ms skipping with 'fixed', 92 ms plain.

Two ways to draw the kept rows:

* ``'bernoulli'``: each row keeps the branch with probability 1 - p and is scaled by 1 / (1 - p): exactly the
  distribution of timm's ``DropPath``. The number of kept rows varies from step to step.
* ``'fixed'``: exactly ``n = max(1, round(B * (1 - p)))`` rows, chosen uniformly, scaled by ``B / n`` (unbiased); shapes
  are static, which suits ``torch.compile`` and avoids a device sync (DINOv2's subset stochastic depth).

In eval mode, or with p = 0, the branch runs on every row and nothing is dropped.

This module is plain PyTorch. :class:`StochasticDepthConfig` is the one configuration of it (rate, schedule over
depth, compute, sampling); :mod:`cosub_seg.models.stochastic_depth` builds timm's blocks with it.
"""
import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..errors import ConfigError

SAMPLING_MODES = ('bernoulli', 'fixed')
SCHEDULES = ('linear', 'constant')
COMPUTE_MODES = ('auto', 'mask', 'skip')
# The drop rate from which skipping beats masking, measured on this project's 2-core CPU for DeiT III-S and
# ConvNeXt-T blocks (bench/stochastic_depth_breakeven.py): skipping's gather/scatter cost is a few percent of a
# branch, so it pays from small rates on. 'auto' masks below this rate and skips from it on.
SKIP_BREAK_EVEN = 0.05


def _zero_touch(anchor: Optional[nn.Module]) -> torch.Tensor:
    """0, computed from one element of each parameter of ``anchor``.

    When a branch is dropped for every row of a step, skipping runs nothing, so its parameters would get no gradient
    and DistributedDataParallel (which expects a gradient for every parameter unless told to look for unused ones)
    fails with "Expected to have finished reduction". Adding this zero keeps every parameter in the graph with a zero
    gradient, which is exactly what masking gives them.
    """
    if anchor is None:
        return torch.zeros(())
    terms = [p.reshape(-1)[:1] for p in anchor.parameters() if p.requires_grad]
    if not terms:
        return torch.zeros(())
    return torch.cat(terms).sum() * 0.0


class StochasticDepth(nn.Module):
    """Per-row stochastic depth for one residual branch, by masking or by skipping the dropped rows.

    As a module (``forward``) it is a drop-in, masked replacement of timm's ``DropPath``: blocks whose forward we do
    not rewrite keep working. :meth:`add_residual` is the entry point that can skip.

    Args:
        drop_prob: probability p that a row drops the branch.
        sampling: 'bernoulli' (timm's distribution) or 'fixed' (exactly round(B * (1 - p)) kept rows).
        compute: 'mask', 'skip', or 'auto' (skip when ``drop_prob >= break_even``; on CUDA only with 'fixed'
            sampling, see :meth:`skips_on`).
        break_even: the rate from which 'auto' skips.
    """

    def __init__(self, drop_prob: float = 0.0, sampling: str = 'bernoulli', compute: str = 'auto',
                 break_even: float = SKIP_BREAK_EVEN):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob}')
        if sampling not in SAMPLING_MODES:
            raise ValueError(f'sampling must be one of {SAMPLING_MODES}, got {sampling!r}')
        if compute not in COMPUTE_MODES:
            raise ValueError(f'compute must be one of {COMPUTE_MODES}, got {compute!r}')
        self.drop_prob = float(drop_prob)
        self.sampling = sampling
        self.compute = compute
        self.skip = compute == 'skip' or (compute == 'auto' and drop_prob >= break_even)

    def skips_on(self, device: torch.device) -> bool:
        """Whether a training step on ``device`` skips the dropped rows: :attr:`skip`, except that 'auto' with
        'bernoulli' sampling masks on CUDA (a host sync per branch and changing shapes; module docstring)."""
        if self.compute == 'auto' and self.sampling == 'bernoulli' and torch.device(device).type == 'cuda':
            return False
        return self.skip

    def extra_repr(self) -> str:
        mode = 'mask' if not self.skip else 'skip (mask on CUDA)' if not self.skips_on('cuda') else 'skip'
        return f'drop_prob={self.drop_prob:.3f}, sampling={self.sampling}, {mode}'

    def num_kept(self, batch: int) -> int:
        """Rows kept per step in 'fixed' mode."""
        return max(1, int(batch * (1.0 - self.drop_prob) + 0.5))

    def draw(self, batch: int, device: torch.device) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], float]:
        """Draws the kept rows of one step: ``(mask, indices, scale)``.

        'bernoulli' returns a (B,) bool mask (indices None), 'fixed' the kept row indices (mask None); masking and
        skipping derive what they need from the same draw, so with the same random state they keep the same rows.
        """
        keep_prob = 1.0 - self.drop_prob
        if self.sampling == 'bernoulli':
            return torch.rand(batch, device=device) < keep_prob, None, 1.0 / keep_prob
        n = self.num_kept(batch)
        return None, torch.randperm(batch, device=device)[:n], batch / n

    def _active(self) -> bool:
        return self.training and self.drop_prob > 0.0

    @staticmethod
    def _row_scale(mask, indices, scale: float, like: torch.Tensor) -> torch.Tensor:
        """The (B, 1, ..., 1) factor of masking: ``scale`` on kept rows, 0 on dropped ones."""
        batch = like.shape[0]
        if mask is None:
            mask = torch.zeros(batch, dtype=torch.bool, device=like.device).index_fill_(0, indices, True)
        return (mask.to(like.dtype) * scale).view(batch, *([1] * (like.dim() - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Masked drop path on a branch output (what timm's ``DropPath`` does)."""
        if not self._active():
            return x
        mask, indices, scale = self.draw(x.shape[0], x.device)
        return x * self._row_scale(mask, indices, scale, x)

    def add_residual(self,
                     shortcut: torch.Tensor,
                     branch: Callable[[torch.Tensor], torch.Tensor],
                     inputs: Optional[torch.Tensor] = None,
                     anchor: Optional[nn.Module] = None) -> torch.Tensor:
        """``shortcut + drop_path(branch(inputs))``, computing the branch only on kept rows when skipping.

        Args:
            shortcut: the residual stream (B, ...), or the projected shortcut of a block that changes shape.
            branch: the residual branch, a function of a batch of rows; rows must be independent (but for BatchNorm).
            inputs: the branch's input; default ``shortcut``.
            anchor: the module holding the branch's parameters (the block): when every row drops the branch, they
                still get a (zero) gradient, so DistributedDataParallel does not stall.
        """
        inputs = shortcut if inputs is None else inputs
        if not self._active():
            return shortcut + branch(inputs)
        mask, indices, scale = self.draw(inputs.shape[0], inputs.device)
        if not self.skips_on(inputs.device):
            out = branch(inputs)
            return shortcut + out * self._row_scale(mask, indices, scale, out)
        if indices is None:
            indices = mask.nonzero().squeeze(1)
        kept = indices.numel()
        if kept == 0:
            return shortcut + _zero_touch(anchor).to(shortcut)
        if kept == inputs.shape[0]:  # nothing dropped this step: no gather or scatter needed
            return shortcut + branch(inputs) * scale
        out = branch(inputs.index_select(0, indices))
        return shortcut.index_add(0, indices, out.to(shortcut.dtype), alpha=scale)


@dataclass(frozen=True)
class StochasticDepthConfig:
    """How a network's residual branches are dropped: the one config entry of the classifier and the segmentation
    backbone, ``stochastic_depth=dict(rate=..., schedule=..., compute=..., sampling=...)``.

    Args:
        rate: the stochastic-depth rate p (cosub needs p > 0: the copies of a batch differ through it).
        schedule: 'linear' (timm's: rising over depth from 0 to ``rate``) or 'constant' (``rate`` in every branch,
            as the cosub authors' ViT code, ``dpr_constant=True``).
        compute: 'auto' (skip from :data:`SKIP_BREAK_EVEN` on, mask below; on CUDA with 'bernoulli' sampling,
            mask), 'skip' or 'mask'.
        sampling: 'bernoulli' (timm's per-row draws) or 'fixed' (a fixed count of kept rows per step).
    """

    rate: float = 0.0
    schedule: str = 'linear'
    compute: str = 'auto'
    sampling: str = 'bernoulli'

    def __post_init__(self):
        if not 0.0 <= self.rate < 1.0:
            raise ConfigError(f'stochastic_depth.rate must be in [0, 1), got {self.rate}')
        if self.schedule not in SCHEDULES:
            raise ConfigError(f'stochastic_depth.schedule must be one of {SCHEDULES}, got {self.schedule!r}')
        if self.compute not in COMPUTE_MODES:
            raise ConfigError(f'stochastic_depth.compute must be one of {COMPUTE_MODES}, got {self.compute!r}')
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(f'stochastic_depth.sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}')

    @classmethod
    def build(cls, stochastic_depth: Optional[Union[dict, 'StochasticDepthConfig']] = None,
              **legacy: Optional[object]) -> 'StochasticDepthConfig':
        """From the config entry (a dict or an instance), with the flat arguments of configs written before it
        (``drop_path_rate``, ``drop_path_schedule``, ``drop_path_compute``, ``drop_path_sampling``; None = not
        given) applied on top, so old configs and ``--cfg-options model.drop_path_rate=...`` keep working."""
        entry = stochastic_depth if isinstance(stochastic_depth, dict) else \
            dataclasses.asdict(stochastic_depth) if stochastic_depth is not None else {}
        unknown = sorted(set(entry) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f'stochastic_depth takes rate, schedule, compute and sampling, got {unknown}')
        for name, value in legacy.items():
            if value is not None:
                if name not in LEGACY_ARGS:
                    raise ConfigError(f'unknown stochastic-depth argument {name!r}')
                entry = dict(entry, **{LEGACY_ARGS[name]: value})
        return cls(**entry)

    def branch(self, timm_rate: float, break_even: float = SKIP_BREAK_EVEN) -> 'StochasticDepth':
        """The module of one residual branch to which timm's (linear) schedule gives ``timm_rate``."""
        rate = self.rate if self.schedule == 'constant' else timm_rate
        return StochasticDepth(rate, sampling=self.sampling, compute=self.compute, break_even=break_even)


# The flat arguments of configs written before the ``stochastic_depth`` entry, and the field each one sets.
LEGACY_ARGS = {'drop_path_rate': 'rate', 'drop_path_schedule': 'schedule', 'drop_path_compute': 'compute',
               'drop_path_sampling': 'sampling'}


__all__ = ['StochasticDepth', 'StochasticDepthConfig', 'SAMPLING_MODES', 'COMPUTE_MODES', 'SCHEDULES',
           'SKIP_BREAK_EVEN']
