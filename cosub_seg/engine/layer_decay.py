"""Layer-wise learning-rate decay (BEiT, https://arxiv.org/abs/2106.08254) for timm backbones: in segmentors and in
the classifier being fine-tuned."""
import re
from typing import Dict, Sequence

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as SEG_OPTIM_WRAPPER_CONSTRUCTORS
from timm.models import group_parameters
from timm.models._manipulate import MATCH_PREV_GROUP
from timm.models.pit import PoolingVisionTransformer

from ..models.pretrained import classifier_names
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS
from .optimizers import no_weight_decay_names


# Families whose timm class has no ``group_matcher()``, with one in timm's format. PiT: the stem is the patch
# embedding, its position map and the class token; each stage's pooling layer joins the stage's first block, as
# timm's Swin and ConvNeXt matchers do with their downsampling layers.
GROUP_MATCHERS = {
    PoolingVisionTransformer: dict(
        stem=r'^cls_token|pos_embed|patch_embed',
        blocks=[(r'^transformers\.(\d+)\.pool', (0,)), (r'^transformers\.(\d+)\.blocks\.(\d+)', None),
                (r'^transformers\.(\d+)\.norm', MATCH_PREV_GROUP), (r'^norm', MATCH_PREV_GROUP)],
    ),
}


def group_matcher(timm_model: nn.Module) -> dict:
    """timm's ``group_matcher(coarse=False)`` of the model, or ours from :data:`GROUP_MATCHERS`."""
    if hasattr(timm_model, 'group_matcher'):
        return timm_model.group_matcher(coarse=False)
    for cls, matcher in GROUP_MATCHERS.items():
        if isinstance(timm_model, cls):
            return matcher
    raise TypeError(f'{type(timm_model).__name__} has no group_matcher() and cosub_seg knows no layer order for it, '
                    'so layer-wise lr decay cannot be applied: add a matcher to GROUP_MATCHERS in '
                    'cosub_seg/engine/layer_decay.py, or use the default optimiser constructor (remove '
                    "optim_wrapper.constructor='LayerDecayOptimWrapperConstructor' and paramwise_cfg.layer_decay_rate)")


def backbone_layer_ids(timm_model: nn.Module, skip: Sequence[str] = ()) -> Dict[str, int]:
    """Depth of each parameter of a timm model (0 = stem, then blocks or stages), from its group matcher.

    Every parameter but those in ``skip`` (a classifier, which the caller places) must be matched: timm puts
    unmatched ones (a layer the matcher does not know) in one extra group after the last block, which would silently
    give them the top block's learning rate."""
    matcher = group_matcher(timm_model)
    patterns = [re.compile(spec if isinstance(spec, str) else spec[0])
                for specs in matcher.values() if specs is not None
                for spec in (specs if isinstance(specs, (list, tuple)) else [specs])]
    unmatched = [name for name, _ in timm_model.named_parameters()
                 if name not in skip and not any(p.match(name) for p in patterns)]
    if unmatched:
        raise ValueError(f'the layer order of {type(timm_model).__name__} does not place {len(unmatched)} '
                         f'parameter(s), e.g. {unmatched[:5]}: extend its group matcher (GROUP_MATCHERS in '
                         'cosub_seg/engine/layer_decay.py)')
    layers = group_parameters(timm_model, matcher, reverse=True)
    return {name: layer for name, layer in layers.items() if name not in skip}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Learning rate ``base_lr * decay ** (L - layer)`` for a model whose backbone is a timm network: a segmentor
    (``backbone.model``, a :class:`TimmSegBackbone`) or a :class:`CosubClassifier` (``backbone``) being fine-tuned.

    Layers come from timm's ``group_matcher``: the stem is 0, blocks (or stages) count up to ``L - 1``; everything
    outside the backbone (neck, heads) and the classifier is layer ``L`` and keeps ``base_lr``. No weight decay on 1-D
    parameters (norms, biases, LayerScale) and on what timm names in ``no_weight_decay()`` (position embeddings, class
    tokens...).

    ``paramwise_cfg=dict(layer_decay_rate=0.9)``; other paramwise options are not used with this constructor.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        module = model.module if hasattr(model, 'module') else model
        decay_rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        backbone = getattr(module, 'backbone', None)
        timm_model, prefix = getattr(backbone, 'model', None), 'backbone.model.'
        if timm_model is None and hasattr(backbone, 'get_classifier'):  # CosubClassifier: backbone is the network
            timm_model, prefix = backbone, 'backbone.'
        if timm_model is None:
            raise TypeError('LayerDecayOptimWrapperConstructor needs a segmentor whose backbone is a TimmSegBackbone '
                            '(backbone.model) or a CosubClassifier (backbone), got a backbone of type '
                            f'{type(backbone).__name__}')
        layer_of = backbone_layer_ids(timm_model, skip=classifier_names(timm_model))
        num_layers = max(layer_of.values()) + 1
        no_decay = no_weight_decay_names(module)
        groups: Dict[tuple, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer = layer_of.get(name[len(prefix):], num_layers) if name.startswith(prefix) else num_layers
            # timm's no_weight_decay() names the position embeddings and class tokens of every family we use.
            decays = not (param.ndim <= 1 or name in no_decay)
            key = (layer, decays)
            if key not in groups:
                groups[key] = dict(params=[], lr=self.base_lr * decay_rate ** (num_layers - layer),
                                   weight_decay=self.base_wd if decays else 0.0, layer_id=layer)
            groups[key]['params'].append(param)
        print_log(f'layer-wise lr decay {decay_rate}: {num_layers} backbone layers, '
                  f'{len(groups)} parameter groups', logger='current')
        optimizer_cfg = dict(self.optimizer_cfg, params=[groups[k] for k in sorted(groups)])
        # MMEngine's root registries resolve in the run's scope: mmseg's for a segmentor, ours (LAMB) for a classifier.
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))


# Segmentation configs run in mmseg's scope, fine-tuning configs in ours.
SEG_OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayOptimWrapperConstructor)
