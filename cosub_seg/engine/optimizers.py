"""Optimiser pieces: timm's LAMB, weight-decay exclusions read from timm models, and autocast without a GPU."""
import fnmatch
from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.runner.amp import autocast
from timm.optim import Lamb

from mmengine.registry import OPTIM_WRAPPERS as ROOT_OPTIM_WRAPPERS

from ..errors import ConfigError
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS

OPTIMIZERS.register_module(name='Lamb', module=Lamb)


def no_weight_decay_names(model: nn.Module) -> set:
    """Full names of the parameters that timm sub-modules exclude from weight decay (``no_weight_decay()``: position
    embeddings, class tokens, relative position tables...). timm's entries are patterns, matched with ``fnmatch``
    as timm's own optimiser factory does (XCiT names ``'pos_embed.*'``, its Fourier encoding's parameters)."""
    names = set()
    for prefix, module in model.named_modules():
        if hasattr(module, 'no_weight_decay') and callable(module.no_weight_decay):
            patterns = list(module.no_weight_decay())
            for name, _ in module.named_parameters():
                if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                    names.add(f'{prefix}.{name}' if prefix else name)
    return names


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class NoDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor that also takes no weight decay on norms, biases and other 1-D parameters
    (``flat_decay_mult=0``) and on the parameters timm models name in ``no_weight_decay()``, the rule DeiT III
    trains with. Other ``paramwise_cfg`` options keep their meaning."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        if 'layer_decay_rate' in paramwise_cfg:
            raise ConfigError('optim_wrapper.paramwise_cfg.layer_decay_rate is read by the layer-decay constructor '
                              'only, and this config uses NoDecayOptimWrapperConstructor: also set '
                              'optim_wrapper.constructor=LayerDecayOptimWrapperConstructor')
        paramwise_cfg.setdefault('flat_decay_mult', 0.0)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        module = model.module if hasattr(model, 'module') else model
        custom_keys = dict(self.paramwise_cfg.get('custom_keys', {}))
        for name in no_weight_decay_names(module):
            custom_keys.setdefault(name, dict(decay_mult=0.0))
        self.paramwise_cfg['custom_keys'] = custom_keys
        wrapper = super().__call__(model)
        # MMEngine logs one 'paramwise_options' line per setting of every parameter (the console leaves them out, see
        # cosub_seg/runtime/console.py); this is the summary.
        groups = wrapper.optimizer.param_groups
        decayed = sum(p.numel() for g in groups if g.get('weight_decay', 0) > 0 for p in g['params'])
        total = sum(p.numel() for g in groups for p in g['params'])
        no_decay = sum(1 for g in groups if g.get('weight_decay', 0) == 0 for _ in g['params'])
        print_log(f'weight decay {self.base_wd} on {decayed:,} of {total:,} parameters; none on {no_decay} tensors '
                  '(norms, biases and other 1-D parameters, and what timm names in no_weight_decay())',
                  logger='current')
        return wrapper


# In MMEngine's root registry: both stages (scopes cosub_seg and mmseg) use it.
@ROOT_OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Runs forward passes under ``torch.autocast`` on any device (the CPU included), without loss scaling.

    Use it for bf16 on CPUs, where MMEngine's ``AmpOptimWrapper`` refuses to run; on GPUs with fp16 use
    ``AmpOptimWrapper``, whose loss scaling fp16 needs.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs):
        super().__init__(**kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ConfigError(f'dtype must be "bfloat16" or "float16", got {dtype!r}')
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        with super().optim_context(model), autocast(device_type=device, dtype=self.cast_dtype):
            yield
