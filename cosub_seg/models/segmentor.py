"""``CosubEncoderDecoder``: mmseg's EncoderDecoder with submodel co-training during fine-tuning and batched
sliding-window inference."""
from typing import List, Optional

import torch
import torch.nn as nn
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS as SEG_MODELS

from ..cosub import cosub_pixel_peer_loss
from ..errors import ConfigError
from .checkpointing import set_head_checkpointing
from .slide import ChunkTuner, slide_inference, tuned_slide_inference


@SEG_MODELS.register_module()
class CosubEncoderDecoder(EncoderDecoder):
    """EncoderDecoder whose training step runs the same crops through ``num_submodels`` stochastic-depth submodels
    (one forward of a k·B batch) and adds a per-pixel peer loss.

    The decode head's own loss is computed on every copy and weighted by ``1 - lam``; the peer term
    (:func:`cosub_seg.cosub.cosub_pixel_peer_loss`: soft cross-entropy towards the other copies' stop-gradient
    softmax, ignore pixels excluded) is weighted by ``lam``, the form cosub uses in pretraining. The auxiliary head
    learns from the labels only. With ``num_submodels=1`` this is exactly mmseg's EncoderDecoder. The backbone needs
    stochastic depth (drop_path_rate > 0) for the copies to differ. Inference runs the full network.

    Sliding-window inference (``test_cfg=dict(mode='slide', ...)``) takes one more key, ``crop_batch_size``: the
    number of windows per forward (:mod:`cosub_seg.models.slide`), an int or ``'auto'`` (timed on the first images,
    mmseg's one-window forward among the candidates). Without it, or with 1, it is mmseg's slide inference as is.

    ``head_checkpointing=True`` checkpoints each ConvModule of the decode and auxiliary heads
    (:func:`cosub_seg.models.checkpointing.set_head_checkpointing`), where UperNet's stride-4 activations are: with
    ``backbone.grad_checkpointing=True``, UperNet ViT-B's step at 512 crops keeps 0.56x the memory of a plain step
    instead of 0.69x, for 1.19x the time (docs/benchmarks.md).
    """

    def __init__(self, *args, num_submodels: int = 2, lam: float = 0.5, head_checkpointing: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if num_submodels < 1:
            raise ConfigError(f'num_submodels must be >= 1, got {num_submodels}')
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f'lam must be in [0, 1], got {lam}')
        self.num_submodels = num_submodels
        self.lam = lam
        self.head_checkpointing = bool(head_checkpointing)
        if self.head_checkpointing:
            heads = [self.decode_head]
            if self.with_auxiliary_head:
                heads += list(self.auxiliary_head) if isinstance(self.auxiliary_head, nn.ModuleList) \
                    else [self.auxiliary_head]
            for head in heads:
                set_head_checkpointing(head)
        self._chunk_tuner: Optional[ChunkTuner] = None

    def loss(self, inputs: torch.Tensor, data_samples: List) -> dict:
        k = self.num_submodels
        if k == 1:
            return super().loss(inputs, data_samples)
        feats = self.extract_feat(inputs.repeat(k, 1, 1, 1))
        samples = list(data_samples) * k
        head = self.decode_head
        seg_logits = head.forward(feats)
        losses = {}
        for name, value in head.loss_by_feat(seg_logits, samples).items():
            losses[f'decode.{name}'] = (1.0 - self.lam) * value if 'loss' in name else value
        labels = torch.stack([s.gt_sem_seg.data for s in data_samples]).squeeze(1)  # (B, H, W)
        logits = resize(seg_logits, size=labels.shape[-2:], mode='bilinear', align_corners=head.align_corners)
        logits = logits.view(k, inputs.shape[0], *logits.shape[1:])
        losses['decode.loss_peer'] = self.lam * cosub_pixel_peer_loss(logits, labels != head.ignore_index)
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(feats, samples))
        return losses

    def slide_inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        chunk = self.test_cfg.get('crop_batch_size', 1)
        if chunk == 1:
            return super().slide_inference(inputs, batch_img_metas)
        if not (chunk == 'auto' or (isinstance(chunk, int) and chunk > 1)):
            raise ConfigError(f"test_cfg.crop_batch_size must be a positive int or 'auto', got {chunk!r}")

        def predict(crops: torch.Tensor) -> torch.Tensor:
            # decode_head.predict resizes the logits to the first meta's img_shape: the crop's, as mmseg sets it.
            metas = [dict(batch_img_metas[0], img_shape=crops.shape[2:])]
            return self.encode_decode(crops, metas)

        crop, stride = self.test_cfg.crop_size, self.test_cfg.stride
        if chunk == 'auto':
            if self._chunk_tuner is None:
                self._chunk_tuner = ChunkTuner()
            return tuned_slide_inference(self._chunk_tuner, inputs, predict, self.out_channels, crop, stride)
        return slide_inference(inputs, predict, self.out_channels, crop, stride, chunk)
