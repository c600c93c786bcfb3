"""Model analysis: parameters, FLOPs and throughput of the backbone and the whole model of a config.

FLOPs follow fvcore's convention, which MMEngine's ``FlopAnalyzer`` implements and papers quote (DeiT-S: 4.6 G at
224): one fused multiply-add counts as one FLOP, and element-wise operations (additions, activations, softmax) are
not counted. MMEngine 0.10 has no rule for ``aten::scaled_dot_product_attention``, the fused attention timm uses,
so on its own it silently leaves out the two attention matrix products (8 % of DeiT-S); :func:`sdpa_flop_jit`
counts them as the explicit ``q @ k^T`` and ``attn @ v`` were counted.
"""
import time
from math import prod
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope

from .runtime.launch import merge_cfg_options


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """FLOPs of ``scaled_dot_product_attention(q, k, v)``: ``q @ k^T`` (Nq x Nk x d per head) plus ``attn @ v``
    (Nq x Nk x dv per head)."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    return prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def count_flops(module: nn.Module, inputs: Tuple) -> Dict:
    """Total FLOPs of ``module(*inputs)``, per operator, and the operators that were not counted."""
    analyzer = FlopAnalyzer(module, inputs).set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return dict(flops=analyzer.total(), by_operator=dict(analyzer.by_operator()),
                not_counted=sorted(analyzer.unsupported_ops()))


def count_params(*modules: Optional[nn.Module]) -> int:
    return sum(parameter_count(m)[''] for m in modules if m is not None)


def build_model(config: str, cfg_options: Optional[dict] = None) -> Tuple[nn.Module, Config]:
    """The model of a pretraining or segmentation config, randomly initialised (no checkpoint is read), in eval
    mode, with SyncBN turned into BN so it runs on one device."""
    cfg = Config.fromfile(config)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options, config)
    if 'backbone' in cfg.model and isinstance(cfg.model.backbone, dict) and 'init_cfg' in cfg.model.backbone:
        cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmseg'):
        model = MODELS.build(cfg.model)
    return revert_sync_batchnorm(model).eval(), cfg


def default_input_size(cfg: Config) -> Tuple[int, int]:
    """The crop a segmentation config trains on, or a classifier's ``img_size`` (224 when unset)."""
    size = cfg.model.get('data_preprocessor', {}).get('size') if 'decode_head' in cfg.model else None
    if size is None:
        size = (cfg.model.get('model_kwargs') or {}).get('img_size', 224)
    return (size, size) if isinstance(size, int) else tuple(size)


def analysis_parts(model: nn.Module) -> Dict[str, Tuple[nn.Module, Sequence[nn.Module]]]:
    """What is measured: name -> (module to run, modules whose parameters count). A segmentor's 'segmentor' is
    its inference path (backbone, neck, decode head: ``mode='tensor'``); the auxiliary head trains only."""
    if hasattr(model, 'decode_head'):
        inference = [model.backbone, getattr(model, 'neck', None), model.decode_head]
        parts = dict(backbone=(model.backbone, [model.backbone]), segmentor=(model, inference))
        if getattr(model, 'auxiliary_head', None) is not None:
            parts['auxiliary_head (training only)'] = (None, [model.auxiliary_head])
        return parts
    return dict(network=(model.backbone, [model.backbone]))


def analyze(config: str, input_size: Optional[Tuple[int, int]] = None, cfg_options: Optional[dict] = None) -> Dict:
    """Parameters and FLOPs of each part of the config's model (see :func:`analysis_parts`) for one image of
    ``input_size`` (H, W); the default is :func:`default_input_size`."""
    model, cfg = build_model(config, cfg_options)
    size = tuple(input_size or default_input_size(cfg))
    x = torch.randn(1, 3, *size)
    results = {}
    for name, (module, counted) in analysis_parts(model).items():
        entry = dict(params=count_params(*counted))
        if module is not None:
            with torch.no_grad():
                entry.update(count_flops(module, (x,)))
        results[name] = entry
    return dict(config=config, input_size=list(size), parts=results)


def measure_throughput(module: nn.Module, batch_size: int, input_size: Tuple[int, int], device: str = 'cpu',
                       warmup: int = 3, iters: int = 10, amp: bool = False) -> float:
    """Images per second of ``module`` in inference (eval mode, no gradients) on a random batch, timed over
    ``iters`` forward passes after ``warmup`` untimed ones, synchronising the GPU around the timed loop."""
    module = module.to(device).eval()
    x = torch.randn(batch_size, 3, *input_size, device=device)
    dtype = torch.float16 if device.startswith('cuda') else torch.bfloat16

    def sync():
        if device.startswith('cuda'):
            torch.cuda.synchronize(device)

    with torch.no_grad(), torch.autocast(device.split(':')[0], dtype=dtype, enabled=amp):
        for _ in range(warmup):
            module(x)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            module(x)
        sync()
        elapsed = time.perf_counter() - start
    return batch_size * iters / elapsed


def throughput(config: str, batch_size: int = 8, input_size: Optional[Tuple[int, int]] = None, device: str = 'cpu',
               warmup: int = 3, iters: int = 10, amp: bool = False, cfg_options: Optional[dict] = None) -> Dict:
    """Images per second of each runnable part of the config's model (see :func:`analysis_parts`)."""
    model, cfg = build_model(config, cfg_options)
    size = tuple(input_size or default_input_size(cfg))
    speeds = {name: measure_throughput(module, batch_size, size, device, warmup, iters, amp)
              for name, (module, _) in analysis_parts(model).items() if module is not None}
    return dict(config=config, input_size=list(size), batch_size=batch_size, device=device, amp=amp,
                images_per_s=speeds)


__all__ = ['sdpa_flop_jit', 'count_flops', 'count_params', 'build_model', 'default_input_size', 'analysis_parts',
           'analyze', 'measure_throughput', 'throughput']
