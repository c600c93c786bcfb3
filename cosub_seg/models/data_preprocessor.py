"""Batch preprocessing for classification: stacking, normalisation and timm's mixup / cutmix."""
from typing import Optional

import torch
from mmengine.model import ImgDataPreprocessor
from timm.data import Mixup

from ..errors import ConfigError
from ..registry import MODELS


@MODELS.register_module()
class ClsDataPreprocessor(ImgDataPreprocessor):
    """Normalises images and, in training, mixes them with timm's ``Mixup`` (mixup and/or cutmix).

    The class targets are written to each data sample as ``gt_score`` (B, C): one-hot (with label smoothing) without
    mixing, mixed scores with it. Labels stay in ``gt_label`` for the metrics.

    Args:
        num_classes: number of classes of the targets.
        mean, std, bgr_to_rgb: as in :class:`mmengine.model.ImgDataPreprocessor` (images are loaded as BGR).
        mixup: keyword arguments of :class:`timm.data.Mixup` (e.g. ``mixup_alpha=0.8, cutmix_alpha=1.0``), or None.
            Mixup needs an even training batch size.
        label_smoothing: smoothing of the targets when ``mixup`` is None.
    """

    def __init__(self,
                 num_classes: int,
                 mean=(123.675, 116.28, 103.53),
                 std=(58.395, 57.12, 57.375),
                 bgr_to_rgb: bool = True,
                 mixup: Optional[dict] = None,
                 label_smoothing: float = 0.0):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup = Mixup(num_classes=num_classes, **mixup) if mixup else None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs, data_samples = data['inputs'], data['data_samples']
        if data_samples is None or not training:
            return data
        labels = torch.stack([sample.gt_label for sample in data_samples]).view(-1).to(inputs.device)
        if self.mixup is not None:
            if inputs.shape[0] % 2:
                raise ConfigError(f'mixup/cutmix needs an even batch size, got {inputs.shape[0]}: change '
                                  'train_dataloader.batch_size or set drop_last=True')
            inputs, scores = self.mixup(inputs, labels)
        else:
            off = self.label_smoothing / self.num_classes
            scores = torch.full((labels.shape[0], self.num_classes), off, device=inputs.device)
            scores.scatter_(1, labels[:, None], 1.0 - self.label_smoothing + off)
        for sample, score in zip(data_samples, scores):
            sample.gt_score = score
        return dict(inputs=inputs, data_samples=data_samples)
