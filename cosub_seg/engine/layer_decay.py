"""Layer-wise learning-rate decay (BEiT, https://arxiv.org/abs/2106.08254) for segmentors on timm backbones."""
import re
from typing import Dict

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as SEG_OPTIM_WRAPPER_CONSTRUCTORS
from mmseg.registry import OPTIM_WRAPPERS as SEG_OPTIM_WRAPPERS
from mmseg.registry import OPTIMIZERS as SEG_OPTIMIZERS
from timm.models import group_parameters

from .optimizers import no_weight_decay_names


def backbone_layer_ids(timm_model: nn.Module) -> Dict[str, int]:
    """Depth of each parameter of a timm model (0 = stem, then blocks or stages), read from its ``group_matcher``."""
    if not hasattr(timm_model, 'group_matcher'):
        raise TypeError(f'{type(timm_model).__name__} has no group_matcher(): its layer depths are unknown')
    return group_parameters(timm_model, timm_model.group_matcher(coarse=False), reverse=True)


@SEG_OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Learning rate ``base_lr * decay ** (L - layer)`` for a segmentor whose ``backbone.model`` is a timm model.

    Layers come from timm's ``group_matcher``: the stem is 0, blocks (or stages) count up to ``L - 1``; everything
    outside the backbone (neck, heads) is layer ``L`` and keeps ``base_lr``. No weight decay on 1-D parameters (norms,
    biases, LayerScale) and on what timm names in ``no_weight_decay()`` (position embeddings, class tokens...).

    ``paramwise_cfg=dict(layer_decay_rate=0.9)``; other paramwise options are not used with this constructor.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        module = model.module if hasattr(model, 'module') else model
        decay_rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        timm_model = getattr(getattr(module, 'backbone', None), 'model', None)
        if timm_model is None:
            raise TypeError('LayerDecayOptimWrapperConstructor needs a segmentor whose backbone is a TimmSegBackbone '
                            f'(backbone.model), got {type(getattr(module, "backbone", None)).__name__}')
        layer_of = backbone_layer_ids(timm_model)
        num_layers = max(layer_of.values()) + 1
        no_decay = no_weight_decay_names(module)
        groups: Dict[tuple, dict] = {}
        prefix = 'backbone.model.'
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer = layer_of.get(name[len(prefix):], num_layers - 1) if name.startswith(prefix) else num_layers
            decays = not (param.ndim <= 1 or name in no_decay or re.search(r'(^|\.)(pos_embed|cls_token)$', name))
            key = (layer, decays)
            if key not in groups:
                groups[key] = dict(params=[], lr=self.base_lr * decay_rate ** (num_layers - layer),
                                   weight_decay=self.base_wd if decays else 0.0, layer_id=layer)
            groups[key]['params'].append(param)
        print_log(f'layer-wise lr decay {decay_rate}: {num_layers} backbone layers, '
                  f'{len(groups)} parameter groups', logger='current')
        optimizer_cfg = dict(self.optimizer_cfg, params=[groups[k] for k in sorted(groups)])
        optimizer = SEG_OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return SEG_OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))
