"""Stochastic depth of timm models, with compute skipping wired into the six families cosub_seg uses.

Every residual branch of the network gets a :class:`cosub_seg.cosub.StochasticDepth` configured by one
:class:`cosub_seg.cosub.StochasticDepthConfig` (``stochastic_depth=dict(rate, schedule, compute, sampling)`` in the
configs), and every known block hands its branches to :meth:`StochasticDepth.add_residual`, so dropped rows are
skipped, not masked. :func:`create_timm_model` (``models/timm_factory.py``) does it in one of two ways:

* where timm lets a caller choose the block class, the blocks are built as ours: timm's ``VisionTransformer``
  (ViT, DeiT III) takes ``block_fn``, so :class:`ViTBlock` is built with its branches' modules
  (:func:`vit_block_fn`);
* elsewhere the model is built by timm and :func:`configure_stochastic_depth` replaces each ``drop_path*`` slot
  (timm's ``DropPath``, or ``nn.Identity`` where the rate is 0) with the module the schedule gives it and switches
  each known block to the subclass below (``__class__``): timm's Swin, ConvNeXt, RegNet, XCiT and PiT construct
  their blocks themselves.

The subclasses only restate timm's forward with the branch as a function; they add no parameters and keep every
state-dict key. Blocks of other classes keep timm's forward, in which the slot masks as timm's ``DropPath`` does.

| family | timm block | branches |
|---|---|---|
| ViT / DeiT III, PiT | ``vision_transformer.Block`` | attention (+ LayerScale), MLP (+ LayerScale) |
| Swin | ``swin_transformer.SwinTransformerBlock`` | window attention, MLP |
| ConvNeXt | ``convnext.ConvNeXtBlock`` | depthwise conv + norm + MLP (+ gamma) |
| RegNet | ``regnet.Bottleneck`` | conv1, conv2, SE, conv3 (BatchNorm: statistics of kept rows only) |
| XCiT | ``xcit.XCABlock``, ``xcit.ClassAttentionBlock`` | XCA, patch interaction (BatchNorm), MLP; class attn |

The sub-classes' forwards are tested against timm's own forward (same outputs in eval mode and, for the same kept
rows, in training), which also catches a timm release that changes a block.
"""
import functools
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import DropPath
from timm.models import convnext, regnet, swin_transformer, vision_transformer, xcit

from ..cosub.stochastic_depth import SKIP_BREAK_EVEN, StochasticDepth, StochasticDepthConfig
from ..errors import ConfigError


class ViTBlock(vision_transformer.Block):
    """timm's pre-norm transformer block (ViT, DeiT III, PiT) with skippable branches.

    Built by timm's ``VisionTransformer`` through ``block_fn`` (:func:`vit_block_fn`), it makes its branches'
    modules from ``stochastic_depth``; PiT's blocks are timm's, switched to this class afterwards."""

    def __init__(self, *args, drop_path: float = 0.0, stochastic_depth: Optional[StochasticDepthConfig] = None,
                 **kwargs):
        super().__init__(*args, drop_path=drop_path, **kwargs)
        if stochastic_depth is not None:
            self.drop_path1 = stochastic_depth.branch(drop_path)
            self.drop_path2 = stochastic_depth.branch(drop_path)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None:  # a per-row mask would have to be subset too: keep timm's (masked) forward
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        x = self.drop_path1.add_residual(x, lambda t: self.ls1(self.attn(self.norm1(t), is_causal=is_causal)),
                                         anchor=self)
        return self.drop_path2.add_residual(x, lambda t: self.ls2(self.mlp(self.norm2(t))), anchor=self)


class SwinBlock(swin_transformer.SwinTransformerBlock):
    """timm's Swin block (NHWC) with skippable branches."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = self.drop_path1.add_residual(x, lambda t: self._attn(self.norm1(t)), anchor=self)
        x = x.reshape(B, -1, C)
        x = self.drop_path2.add_residual(x, lambda t: self.mlp(self.norm2(t)), anchor=self)
        return x.reshape(B, H, W, C)


class ConvNeXtBlock(convnext.ConvNeXtBlock):
    """timm's ConvNeXt block with a skippable branch."""

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_dw(x)
        if self.use_conv_mlp:
            x = self.mlp(self.norm(x))
        else:
            x = self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        if self.gamma is not None:
            x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path.add_residual(self.shortcut(x), self._branch, x, anchor=self)


class RegNetBottleneck(regnet.Bottleneck):
    """timm's RegNet bottleneck with a skippable branch. Its BatchNorms see only the kept rows when skipping."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is None:  # no residual, nothing to drop
            return super().forward(x)
        x = self.drop_path.add_residual(
            self.downsample(x), lambda t: self.conv3(self.se(self.conv2(self.conv1(t)))), x, anchor=self)
        return self.act3(x)


class XCABlock(xcit.XCABlock):
    """timm's XCiT block with skippable branches (its local patch interaction holds a BatchNorm)."""

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.drop_path1.add_residual(x, lambda t: self.gamma1 * self.attn(self.norm1(t)), anchor=self)
        # timm (and the official code) run the local patch interaction before the MLP, as here.
        x = self.drop_path3.add_residual(x, lambda t: self.gamma3 * self.local_mp(self.norm3(t), H, W), anchor=self)
        return self.drop_path2.add_residual(x, lambda t: self.gamma2 * self.mlp(self.norm2(t)), anchor=self)


class XCiTClassAttentionBlock(xcit.ClassAttentionBlock):
    """timm's XCiT class-attention block with skippable branches."""

    def _attn_branch(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm1(x)
        return self.gamma1 * torch.cat([self.attn(x_norm), x_norm[:, 1:]], dim=1)

    def _mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.gamma2 * self.mlp(x[:, 0:1]), x[:, 1:]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop_path1.add_residual(x, self._attn_branch, anchor=self)
        x = self.norm2(x) if self.tokens_norm else torch.cat([self.norm2(x[:, 0:1]), x[:, 1:]], dim=1)
        return self.drop_path2.add_residual(x, self._mlp_branch, anchor=self)


# timm block class -> the subclass that skips. Exact classes only: a subclass of these may change the forward.
SKIPPING_BLOCKS: Dict[type, type] = {
    vision_transformer.Block: ViTBlock,
    swin_transformer.SwinTransformerBlock: SwinBlock,
    convnext.ConvNeXtBlock: ConvNeXtBlock,
    regnet.Bottleneck: RegNetBottleneck,
    xcit.XCABlock: XCABlock,
    xcit.ClassAttentionBlock: XCiTClassAttentionBlock,
}


def stochastic_depth_slots(model: nn.Module) -> List[Tuple[nn.Module, str]]:
    """``(parent, attribute name)`` of every stochastic-depth slot of a timm model, in order.

    timm names them ``drop_path``, ``drop_path1``, ``drop_path2``... in every family used here; a slot whose rate is
    0 holds ``nn.Identity`` instead of ``DropPath``.
    """
    return [(parent, name) for parent in model.modules() for name in own_slots(parent)]


def own_slots(module: nn.Module) -> List[str]:
    """The names of ``module``'s own stochastic-depth slots (its children, not deeper): a residual block has some."""
    return [name for name, child in module.named_children()
            if name.startswith('drop_path') and isinstance(child, (DropPath, StochasticDepth, nn.Identity))]


def _slot_rate(module: nn.Module) -> float:
    return float(getattr(module, 'drop_prob', 0.0))


def vit_block_fn(config: StochasticDepthConfig):
    """The ``block_fn`` that makes timm's ``VisionTransformer`` build :class:`ViTBlock` with ``config``."""
    return functools.partial(ViTBlock, stochastic_depth=config)


def configure_stochastic_depth(model: nn.Module, config: StochasticDepthConfig,
                               break_even: float = SKIP_BREAK_EVEN) -> Dict[str, int]:
    """Installs :class:`StochasticDepth` in every drop-path slot of a timm model built with
    ``drop_path_rate=config.rate``, and switches its known blocks to the subclasses that skip.

    Slots that already hold a :class:`StochasticDepth` (blocks built through :func:`vit_block_fn`) keep it; the
    others get ``config.branch(rate timm gave the slot)``. ``break_even`` is the rate from which ``compute='auto'``
    skips.

    Returns:
        Counts for logs: ``slots``, ``skipping`` (slots that skip), ``blocks`` (blocks with a skipping forward),
        ``masked_blocks`` (blocks of a class without one, which mask).
    """
    slots = stochastic_depth_slots(model)
    if config.schedule == 'constant' and config.rate > 0 and not slots:
        raise ConfigError(f'{type(model).__name__} has no drop_path modules: a constant stochastic-depth schedule '
                          'cannot be applied')
    for parent, name in slots:
        if not isinstance(getattr(parent, name), StochasticDepth):
            setattr(parent, name, config.branch(_slot_rate(getattr(parent, name)), break_even))
    skipping = sum(int(getattr(p, n).skip and getattr(p, n).drop_prob > 0) for p, n in slots)
    blocks = masked_blocks = 0
    parents = {id(parent): parent for parent, _ in slots}
    for parent in parents.values():
        target = SKIPPING_BLOCKS.get(type(parent))
        if target is not None:
            parent.__class__ = target
        if type(parent) in SKIPPING_BLOCKS.values():
            blocks += 1
        else:
            masked_blocks += 1
    return dict(slots=len(slots), skipping=skipping, blocks=blocks, masked_blocks=masked_blocks)


__all__ = ['configure_stochastic_depth', 'stochastic_depth_slots', 'own_slots', 'vit_block_fn', 'SKIPPING_BLOCKS',
           'ViTBlock']
