"""``CosubClassifier``: an MMEngine model that pretrains a timm network with submodel co-training."""
import logging
import os.path as osp
import re
from typing import Dict, List, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from ..cosub import cosub_loss
from ..cosub.stochastic_depth import StochasticDepthConfig
from ..errors import ConfigError, MissingFileError
from ..registry import MODELS
from .checkpointing import set_activation_checkpointing
from .pretrained import load_timm_weights
from .timm_factory import create_timm_model


def check_input_size(arch: str, model_kwargs: dict) -> None:
    """Refuses an ``img_size`` smaller than one patch (no grid to lay the position embeddings on, or to resample
    a checkpoint's onto), and warns about one that is not a whole number of patches: the remainder of every image
    falls outside the patches (DeiT III's ViT-H/14 at 160 px does this on purpose: an 11x11 grid)."""
    img_size = model_kwargs.get('img_size')
    if img_size is None:
        return
    patch = model_kwargs.get('patch_size')
    if patch is None:
        found = re.search(r'patch(\d+)', arch)
        patch = int(found.group(1)) if found else None
    if not patch:
        return
    sizes = [int(s) for s in (img_size if isinstance(img_size, (list, tuple)) else (img_size, img_size))]
    if min(sizes) < patch:
        raise ConfigError(f'model.model_kwargs.img_size={img_size} is smaller than one {patch}-pixel patch of {arch}: '
                          'the position embeddings need at least one patch per side; use a multiple of '
                          f'{patch} (and the same crop size in the data pipelines)')
    if any(s % patch for s in sizes):
        fits = ' or '.join(map(str, sorted({sizes[0] // patch * patch, (sizes[0] // patch + 1) * patch})))
        print_log(f'model.model_kwargs.img_size={img_size} is not a multiple of the patch size {patch} of {arch}: '
                  f'the last {sizes[0] % patch} pixel rows/columns of every image fall outside the patches '
                  f'({fits} would use them all)', logger='current', level=logging.WARNING)


@MODELS.register_module()
class CosubClassifier(BaseModel):
    """Image classifier trained with cosub (k >= 2) or plainly (k = 1) under the same recipe.

    In training, the SAME augmented (mixed) batch runs through the network ``num_submodels`` times in one forward of
    a k·B batch; stochastic depth draws an independent mask per row, so each copy is a different submodel, and
    :func:`cosub_seg.cosub.cosub_loss` makes each copy a stop-gradient teacher of the others. In eval mode the full
    network runs once.

    Args:
        arch: timm model name, e.g. ``'deit3_small_patch16_224'``.
        num_classes: classifier outputs.
        stochastic_depth: how residual branches are dropped (cosub needs rate > 0):
            ``dict(rate=p, schedule='linear'|'constant', compute='auto'|'skip'|'mask',
            sampling='bernoulli'|'fixed')``, see :class:`cosub_seg.cosub.StochasticDepthConfig`.
        drop_path_rate, drop_path_schedule, drop_path_compute, drop_path_sampling: the same settings as flat
            arguments, from configs written before ``stochastic_depth``; when given they override its fields.
        model_kwargs: further arguments of ``timm.create_model`` (``img_size``, ``depth``, ...).
        num_submodels: k, the copies of each batch; 1 trains without co-training.
        lam: weight of the peer term (the paper uses 0.5).
        loss_type: 'bce' (DeiT III / cosub) or 'ce' (soft-target cross-entropy).
        binarize_threshold: binarise targets with ``target > threshold`` (DeiT III's ``--bce-loss`` uses 0.0).
        data_preprocessor: config of the preprocessor (normalisation, mixup).
        init_cfg: MMEngine initialisation config; ``dict(type='Pretrained', checkpoint=PATH)`` starts the network from
            a weights file (fine-tuning, ``tools/finetune.py --checkpoint``): position embeddings resampled to
            ``img_size``, the classifier replaced when the class count differs, the rest refused when it does not
            fit (:func:`cosub_seg.models.pretrained.load_timm_weights`).
        grad_checkpointing: activation checkpointing of every residual block (:mod:`cosub_seg.models.checkpointing`):
            less activation memory for a second forward pass of each block in the backward pass; the same loss and
            gradients, the recomputed blocks dropping the rows they dropped.
    """

    def __init__(self,
                 arch: str,
                 num_classes: int,
                 stochastic_depth: Optional[dict] = None,
                 model_kwargs: Optional[dict] = None,
                 num_submodels: int = 2,
                 lam: float = 0.5,
                 loss_type: str = 'bce',
                 binarize_threshold: Optional[float] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 drop_path_rate: Optional[float] = None,
                 drop_path_schedule: Optional[str] = None,
                 drop_path_compute: Optional[str] = None,
                 drop_path_sampling: Optional[str] = None,
                 grad_checkpointing: bool = False):
        self.pretrained = None
        if init_cfg is not None and init_cfg.get('type') == 'Pretrained':
            if not init_cfg.get('checkpoint'):
                raise ConfigError(f"init_cfg=dict(type='Pretrained') needs a checkpoint=PATH, got {init_cfg}")
            # Loaded by init_weights() through timm's filters (MMEngine's PretrainedInit would not resample the
            # position embeddings or replace a classifier of another class count).
            self.pretrained, init_cfg = init_cfg['checkpoint'], None
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        sd = StochasticDepthConfig.build(stochastic_depth, drop_path_rate=drop_path_rate,
                                         drop_path_schedule=drop_path_schedule, drop_path_compute=drop_path_compute,
                                         drop_path_sampling=drop_path_sampling)
        if num_submodels < 1:
            raise ConfigError(f'num_submodels must be >= 1, got {num_submodels}')
        if num_submodels > 1 and sd.rate <= 0:
            raise ConfigError('cosub (num_submodels > 1) needs stochastic depth: set stochastic_depth.rate > 0, '
                              'otherwise every copy is the same network and the peer term teaches nothing')
        self.arch = arch
        self.num_classes = num_classes
        self.num_submodels = num_submodels
        self.lam = lam
        self.loss_type = loss_type
        self.binarize_threshold = binarize_threshold
        self.stochastic_depth = sd
        check_input_size(arch, model_kwargs or {})
        self.backbone = create_timm_model(arch, stochastic_depth=sd, num_classes=num_classes, **(model_kwargs or {}))
        self.grad_checkpointing = bool(grad_checkpointing)
        if self.grad_checkpointing:
            set_activation_checkpointing(self.backbone)

    def init_weights(self) -> None:
        if self.pretrained is None:
            super().init_weights()
            return
        if not osp.isfile(self.pretrained):
            raise MissingFileError(f'the checkpoint to fine-tune from, {self.pretrained} (model.init_cfg.checkpoint), '
                                   'does not exist: give another with tools/finetune.py CONFIG --checkpoint PATH')
        load_timm_weights(self.backbone, self.pretrained)
        self._is_init = True  # MMEngine's later initialisation must not overwrite the loaded weights

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor') -> Union[torch.Tensor, Dict[str, torch.Tensor], List[BaseDataElement]]:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.backbone(inputs)
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    def loss(self, inputs: torch.Tensor, data_samples: List[BaseDataElement]) -> Dict[str, torch.Tensor]:
        if 'gt_score' in data_samples[0]:
            target = torch.stack([sample.gt_score for sample in data_samples])
        else:
            target = torch.stack([sample.gt_label for sample in data_samples]).view(-1)
        batch = inputs.shape[0]
        logits = self.backbone(inputs.repeat(self.num_submodels, 1, 1, 1))
        logits = logits.view(self.num_submodels, batch, -1)
        losses = cosub_loss(logits, target.to(logits.device), lam=self.lam, loss_type=self.loss_type,
                            binarize_threshold=self.binarize_threshold)
        # MMEngine optimises the sum of the entries whose name contains 'loss' and logs each of them.
        return dict(loss_label=losses.label, loss_peer=losses.peer)

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[BaseDataElement]] = None
                ) -> List[BaseDataElement]:
        scores = self.backbone(inputs).softmax(dim=-1)
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(inputs.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.pred_score = score
            sample.pred_label = score.argmax(dim=0, keepdim=True)
        return data_samples
