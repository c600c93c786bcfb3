"""``TimmSegBackbone``: any timm backbone as an MMSegmentation backbone returning NCHW feature maps."""
import os
import os.path as osp
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS as SEG_MODELS
from timm.models import VisionTransformer
from timm.models.pit import PoolingVisionTransformer
from timm.models.xcit import Xcit

from ..cosub.stochastic_depth import StochasticDepthConfig
from ..errors import ConfigError, MissingFileError
from .checkpointing import set_activation_checkpointing
from .pretrained import load_timm_weights
from .timm_factory import create_timm_model, model_module

PLAIN_TYPES = (VisionTransformer, Xcit)  # one stride-16 scale: a neck makes the pyramid
# What lets each timm family take inputs of any size (PiT is handled in the forward).
ANY_SIZE_KWARGS = {
    'vision_transformer': dict(dynamic_img_size=True),
    'deit': dict(dynamic_img_size=True),
    'swin_transformer': dict(strict_img_size=False),
}


def plain_out_indices(depth: int) -> List[int]:
    """Four blocks spread over a plain ViT's depth, as BEiT's segmentation does: (3, 5, 7, 11) of 12, (7, 11, 15,
    23) of 24."""
    return sorted({max(depth // 3 - 1, 0), max(depth // 2 - 1, 0), max(2 * depth // 3 - 1, 0), depth - 1})


@SEG_MODELS.register_module()
class TimmSegBackbone(BaseModule):
    """A timm model by name, giving the feature maps a segmentation head needs, in NCHW.

    Hierarchical families (Swin, ConvNeXt, RegNet, PiT) give their stage outputs (strides 4/8/16/32; PiT has three
    stages); plain ViT / DeiT III / XCiT give the outputs of ``out_indices`` blocks, all at stride 16, for a neck
    such as mmseg's ``MultiLevelNeck`` to turn into four scales. Inputs of any size work: ViT position embeddings
    are resampled on the fly (``dynamic_img_size``), PiT's too (by this class).

    Pretrained weights come through ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``: a checkpoint of
    ``tools/pretrain.py`` (its EMA weights when it kept an EMA), a plain timm state dict, a DeiT III release
    (``{'model': ...}``, ``gamma_1`` names) or a ``.safetensors`` file. Loading never executes code from the file;
    the classifier is dropped, absolute position embeddings are resampled (bicubic) to ``img_size``, and missing or
    unexpected keys are reported. The weights are loaded in :meth:`init_weights` and the module then marks itself
    initialised, so MMEngine's later initialisation of the segmentor does not overwrite them.

    Args:
        arch: timm model name.
        out_indices: blocks (plain) or stages (hierarchical) to return; None for the defaults above.
        img_size: input size the position embeddings are laid out for (plain ViT, XCiT, Swin, PiT).
        stochastic_depth: how residual branches are dropped:
            ``dict(rate=p, schedule='linear'|'constant', compute='auto'|'skip'|'mask',
            sampling='bernoulli'|'fixed')``, see :class:`cosub_seg.cosub.StochasticDepthConfig`.
        drop_path_rate, drop_path_schedule, drop_path_compute, drop_path_sampling: the same settings as flat
            arguments, from configs written before ``stochastic_depth``; when given they override its fields.
        model_kwargs: further ``timm.create_model`` arguments.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` or None for random initialisation.
        grad_checkpointing: activation checkpointing of every residual block (:mod:`cosub_seg.models.checkpointing`).
        frozen: a frozen backbone, for probes: no parameter requires a gradient, the network stays in eval mode
            (no stochastic depth, normalisation statistics fixed) whatever ``train()`` is asked, and the forward
            runs under ``torch.no_grad()``.
    """

    def __init__(self,
                 arch: str,
                 out_indices: Optional[Sequence[int]] = None,
                 img_size: Optional[Union[int, Sequence[int]]] = None,
                 stochastic_depth: Optional[dict] = None,
                 model_kwargs: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 drop_path_rate: Optional[float] = None,
                 drop_path_schedule: Optional[str] = None,
                 drop_path_compute: Optional[str] = None,
                 drop_path_sampling: Optional[str] = None,
                 frozen: bool = False,
                 grad_checkpointing: bool = False):
        checkpoint = None
        if init_cfg is not None:
            if init_cfg.get('type') != 'Pretrained' or 'checkpoint' not in init_cfg:
                raise ConfigError(f"TimmSegBackbone takes init_cfg=dict(type='Pretrained', checkpoint=PATH), "
                                  f'got {init_cfg}')
            checkpoint = init_cfg['checkpoint']
        super().__init__(init_cfg=None)
        self.checkpoint = checkpoint
        kwargs = dict(model_kwargs or {})
        if img_size is not None:
            kwargs['img_size'] = img_size
        for key, value in ANY_SIZE_KWARGS.get(model_module(arch), {}).items():
            kwargs.setdefault(key, value)
        self.stochastic_depth = StochasticDepthConfig.build(
            stochastic_depth, drop_path_rate=drop_path_rate, drop_path_schedule=drop_path_schedule,
            drop_path_compute=drop_path_compute, drop_path_sampling=drop_path_sampling)
        model = create_timm_model(arch, stochastic_depth=self.stochastic_depth, num_classes=0, **kwargs)
        self.is_plain = isinstance(model, PLAIN_TYPES)
        self.is_pit = isinstance(model, PoolingVisionTransformer)
        if out_indices is None:
            # The last four stages (RegNet also reports its stem; PiT has three).
            out_indices = plain_out_indices(len(model.blocks)) if self.is_plain else min(4, len(model.feature_info))
        self.out_indices = out_indices if isinstance(out_indices, int) else list(out_indices)
        model.prune_intermediate_layers(self.out_indices, prune_norm=True, prune_head=True)
        self.model = model
        self.grad_checkpointing = bool(grad_checkpointing)
        if self.grad_checkpointing:
            set_activation_checkpointing(self.model)
        self.frozen = bool(frozen)
        if self.frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> 'TimmSegBackbone':
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if self.frozen:
            with torch.no_grad():
                return self._forward(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if self.is_pit:
            return self._forward_pit(x)
        return self.model.forward_intermediates(x, indices=self.out_indices, intermediates_only=True)

    def _forward_pit(self, x: torch.Tensor) -> List[torch.Tensor]:
        # timm's PiT adds a fixed-size position map; resample it to the input's patch grid.
        model = self.model
        x = model.patch_embed(x)
        pos = model.pos_embed
        if pos.shape[-2:] != x.shape[-2:]:
            pos = F.interpolate(pos, size=x.shape[-2:], mode='bicubic', align_corners=False)
        x = model.pos_drop(x + pos)
        cls_tokens = model.cls_token.expand(x.shape[0], -1, -1)
        take = range(len(model.transformers))[-self.out_indices:] if isinstance(self.out_indices, int) \
            else self.out_indices
        feats = []
        for i, stage in enumerate(model.transformers):
            x, cls_tokens = stage((x, cls_tokens))
            if i in take:
                feats.append(x)
        return feats

    def init_weights(self) -> None:
        if self.checkpoint is not None:
            self.load_pretrained(self.checkpoint)
        self._is_init = True

    def load_pretrained(self, path: str) -> None:
        if not osp.isfile(path):
            raise MissingFileError(missing_pretrained_message(path))
        load_timm_weights(self.model, path)


def _what_writes(path: str) -> str:
    """The command that writes ``path``, when its place says it: ``<work dir>/pretrain/`` is where
    tools/pipeline.py pretrains (``make demo``: work_dirs/demo), ``work_dirs/<name>/`` is tools/pretrain.py's
    default work dir for ``configs/pretrain/<name>.py``."""
    parts = osp.normpath(path).split(os.sep)
    if len(parts) >= 3 and parts[-2] == 'pretrain':
        work_dir = os.sep.join(parts[:-2])
        if work_dir == osp.join('work_dirs', 'demo'):
            return '`make demo` writes it (it pretrains on the digits first). '
        return f'`python tools/pipeline.py PRETRAIN_CONFIG SEG_CONFIG --work-dir {work_dir}` writes it. '
    if len(parts) >= 2 and osp.isfile(osp.join('configs', 'pretrain', parts[-2] + '.py')):
        return f'`python tools/pretrain.py configs/pretrain/{parts[-2]}.py` writes it. '
    return ''


def missing_pretrained_message(path: str) -> str:
    """What to do when the pretrained checkpoint the config names does not exist."""
    return (f"the backbone's pretrained checkpoint {path} (model.backbone.init_cfg.checkpoint) does not exist. "
            f'{_what_writes(path)}To use another file: --cfg-options model.backbone.init_cfg.checkpoint=PATH; to '
            'start from random weights: --cfg-options model.backbone.init_cfg=None')


def check_pretrained_checkpoint(model_cfg: dict) -> None:
    """Raises :class:`MissingFileError` (saying which option to set and what writes the file) when the config's
    backbone (segmentation) or model (classification fine-tuning) names a pretrained checkpoint that does not exist;
    checked before a run builds anything."""
    init_cfg = (model_cfg.get('backbone') or {}).get('init_cfg') or {}
    path = init_cfg.get('checkpoint') if init_cfg.get('type') == 'Pretrained' else None
    if isinstance(path, str) and '://' not in path and not osp.isfile(path):
        raise MissingFileError(missing_pretrained_message(path))
    init_cfg = model_cfg.get('init_cfg') or {}
    path = init_cfg.get('checkpoint') if init_cfg.get('type') == 'Pretrained' else None
    if isinstance(path, str) and not osp.isfile(path):
        raise MissingFileError(
            f'the checkpoint to fine-tune from, {path} (model.init_cfg.checkpoint), does not exist. '
            f'{_what_writes(path)}Give another with: tools/finetune.py CONFIG --checkpoint PATH')


__all__ = ['TimmSegBackbone', 'plain_out_indices', 'check_pretrained_checkpoint', 'missing_pretrained_message']
