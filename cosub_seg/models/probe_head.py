"""``LinearProbeHead``: the linear segmentation probe of frozen-backbone evaluation (DINOv2's "linear" and "linear4"
protocols) as an MMSegmentation decode head.

The feature maps named by ``in_index`` (the last block, or four blocks) are resized to the first one's size and
concatenated (mmseg's ``input_transform='resize_concat'``), normalised by a BatchNorm and classified per pixel by a
1 x 1 convolution: no hidden layer, so what it reaches measures what the backbone's features already separate. Pair
it with ``TimmSegBackbone(frozen=True)`` (configs/probe/).
"""
from typing import List, Sequence

import torch
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS as SEG_MODELS

from ..errors import ConfigError


@SEG_MODELS.register_module()
class LinearProbeHead(BaseDecodeHead):
    """BatchNorm + 1 x 1 convolution on the concatenated, resized feature maps.

    Args:
        in_channels: the width of each map in ``in_index`` (a list, one per map).
        in_index: which of the backbone's (or neck's) outputs to use, e.g. ``[3]`` or ``[0, 1, 2, 3]``.
        norm_cfg: the normalisation (``dict(type='SyncBN')`` in the configs; the tools make it BN without a GPU).
        Other arguments are :class:`mmseg.models.decode_heads.decode_head.BaseDecodeHead`'s; ``channels`` is the
        concatenated width and is set here, ``input_transform`` is always ``'resize_concat'``.
    """

    def __init__(self, in_channels: Sequence[int], in_index: Sequence[int], norm_cfg: dict = dict(type='BN'),
                 **kwargs):
        if isinstance(in_channels, int) or isinstance(in_index, int) or len(in_channels) != len(in_index):
            raise ConfigError(f'LinearProbeHead: in_channels and in_index must be lists of the same length (one width '
                              f'per map used), got in_channels={in_channels}, in_index={in_index}')
        for key in ('channels', 'input_transform'):
            if key in kwargs:
                raise ConfigError(f'LinearProbeHead sets {key} itself (the concatenated width, resize_concat): '
                                  f'remove decode_head.{key}={kwargs[key]!r} from the config')
        width = sum(in_channels)
        super().__init__(in_channels=list(in_channels), in_index=list(in_index), channels=width,
                         input_transform='resize_concat', norm_cfg=norm_cfg, **kwargs)
        self.bn = build_norm_layer(norm_cfg, width)[1]

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.bn(self._transform_inputs(inputs)))


__all__ = ['LinearProbeHead']
