"""Model analysis: parameters, FLOPs and throughput of the backbone and the whole model of a config.

FLOPs follow fvcore's convention, which MMEngine's ``FlopAnalyzer`` implements and papers quote (DeiT-S: 4.6 G at
224): one fused multiply-add counts as one FLOP, and element-wise operations (additions, activations, softmax) are
not counted. MMEngine 0.10 has no rule for ``aten::scaled_dot_product_attention``, the fused attention timm uses,
so on its own it silently leaves out the two attention matrix products (8 % of DeiT-S); :func:`sdpa_flop_jit`
counts them as the explicit ``q @ k^T`` and ``attn @ v`` were counted.

:func:`estimate_training_memory` estimates the peak memory of one training step of a config (model, its optimiser,
an EMA copy, the batch's activations) without running it: the model is built on the meta device and the step runs
on fake tensors (``torch._subclasses.FakeTensorMode``), tracked by torch's own ``MemTracker``; it needs no GPU and
seconds to a minute of one CPU core even for ViT-H.
"""
import copy
import time
import warnings
from contextlib import contextmanager
from unittest import mock
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
    return dict(config=config, input_size=list(size), parts=results,
                train_batch_size=cfg.get('train_dataloader', {}).get('batch_size'))


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


GIB = 2**30


def _as_on_a_gpu(cfg: Config) -> bool:
    """Stochastic depth set as a GPU runs it, with shapes fake tensors can follow: 'auto' with Bernoulli draws masks
    on CUDA (``StochasticDepth.skips_on``), so it is estimated masked; 'skip' with Bernoulli draws skips a random
    count of rows, estimated with 'fixed' draws (the expected count). True where that assumption was made."""
    assumed = False
    for owner in (cfg.model, cfg.model.get('backbone')):
        if not (isinstance(owner, dict) and isinstance(owner.get('stochastic_depth'), dict)):
            continue
        depth = owner['stochastic_depth']
        if depth.get('rate', 0) > 0 and depth.get('sampling', 'bernoulli') == 'bernoulli':
            if depth.get('compute', 'auto') == 'auto':
                depth['compute'] = 'mask'
            elif depth.get('compute') == 'skip':
                depth['sampling'], assumed = 'fixed', True
    return assumed


def training_config(config: str, cfg_options: Optional[dict] = None) -> Tuple[Config, bool]:
    """The config as :func:`estimate_training_memory` runs its step: options merged, no checkpoint read, stochastic
    depth as on a GPU (:func:`_as_on_a_gpu`, whose answer comes second)."""
    cfg = Config.fromfile(config)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options, config)
    if 'backbone' in cfg.model and isinstance(cfg.model.backbone, dict) and 'init_cfg' in cfg.model.backbone:
        cfg.model.backbone.init_cfg = None
    return cfg, _as_on_a_gpu(cfg)


def _fake_batch(model: nn.Module, cfg: Config, batch_size: int, size: Tuple[int, int]):
    """Inputs and data samples as the data preprocessor hands them to ``model.loss`` (created under fake mode)."""
    from mmengine.structures import BaseDataElement, PixelData
    inputs = torch.randn(batch_size, 3, *size)
    if hasattr(model, 'decode_head'):
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(batch_size):
            sample = SegDataSample(metainfo=dict(img_shape=size, pad_shape=size, ori_shape=size))
            sample.gt_sem_seg = PixelData(data=torch.zeros(1, *size, dtype=torch.long))
            samples.append(sample)
        return inputs, samples
    num_classes = cfg.model.get('num_classes', 1000)
    return inputs, [BaseDataElement(gt_score=torch.zeros(num_classes)) for _ in range(batch_size)]


@contextmanager
def _fake_friendly_metrics():
    """mmseg's decode heads log a pixel accuracy (no gradient, a scalar) through boolean-mask indexing, whose shape
    fake tensors cannot know: a stand-in returning a zero scalar while the step is estimated (this process only,
    undone on exit)."""
    try:
        from mmseg.models.decode_heads import decode_head
    except ImportError:  # a classifier-only install
        yield
        return
    with mock.patch.object(decode_head, 'accuracy', lambda pred, target, **kwargs: pred.new_zeros(())):
        yield


def _uses_ema(cfg: Config) -> bool:
    return any('EMA' in str(hook.get('type', '')) for hook in cfg.get('custom_hooks') or [])


def estimate_training_memory(config: str, batch_size: int, input_size: Optional[Tuple[int, int]] = None,
                             amp: bool = False, cfg_options: Optional[dict] = None) -> Dict:
    """Peak memory of one training step of ``config`` on one process, per kind, in bytes, from fake tensors.

    What is counted: the model's parameters and buffers, their gradients, the optimiser's state (the config's own
    optimiser, built by MMEngine), an EMA copy of the model when the config has an EMA hook, and what the forward
    and backward passes of ``batch_size`` images of ``input_size`` keep (cosub's k copies, stochastic depth as a GPU
    runs it (:func:`_as_on_a_gpu`), activation checkpointing as set in the config or ``cfg_options``), under bf16
    autocast with ``amp``. What is not: the CUDA context and cuDNN/cuBLAS workspaces (about 0.5-1 GiB on current
    GPUs), the caching allocator's fragmentation, gradient clipping's temporaries, and communication buffers of
    distributed training. torch's CPU kernels stand in for the GPU's: fused attention keeps only its output and
    log-sum-exp on both; a GPU's convolution algorithms may take more workspace.
    """
    from mmengine.optim import build_optim_wrapper
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    cfg, assumed_fixed = training_config(config, cfg_options)
    size = tuple(input_size or default_input_size(cfg))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmseg'), torch.device('meta'):
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).train()
    # The EMA copy is taken of the meta model, before fake mode: copy.deepcopy of a fake tensor copies its
    # FakeTensorMode too, and with it torch's StorageWeakRef keys, whose copies share one weak reference; both free
    # it, and the second free writes into a freed StorageImpl (how the test session's heap got corrupted).
    ema = copy.deepcopy(model).requires_grad_(False) if _uses_ema(cfg) else None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmseg'), _fake_friendly_metrics(), \
            warnings.catch_warnings(), FakeTensorMode(allow_non_fake_inputs=True):
        # MemTracker reads the data pointers of fake tensors to tell storages apart, which torch warns about.
        warnings.filterwarnings('ignore', message='Accessing the data pointer of FakeTensor')
        model = model.to_empty(device='cpu')
        ema = ema.to_empty(device='cpu') if ema is not None else None
        optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        optimizer = optim_wrapper.optimizer
        inputs, samples = _fake_batch(model, cfg, batch_size, size)

        def step():
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
                losses = model(inputs, samples, mode='loss')
            loss = sum(v for k, v in losses.items() if 'loss' in k and isinstance(v, torch.Tensor))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # the optimiser's state exists from the first step on: measure a step of a run under way
        tracker = MemTracker()
        tracker.track_external(model, optimizer, *([ema] if ema is not None else []))
        with tracker:
            step()
        peak = tracker.get_tracker_snapshot('peak')
    device = next(iter(k for k in peak if isinstance(k, torch.device)))
    kinds = {str(kind).split('.')[-1].lower(): int(value) for kind, value in peak[device].items()
             if str(kind) != 'Total'}
    # MemTracker counts the EMA copy's parameters as parameters: shown apart.
    ema_bytes = sum(p.numel() * p.element_size() for p in ema.parameters()) if ema is not None else 0
    kinds['param'] -= ema_bytes
    kinds['ema'] = ema_bytes
    params = sum(p.numel() for p in model.parameters())
    return dict(config=config, batch_size=batch_size, input_size=list(size), amp=amp,
                optimizer=type(optimizer).__name__, params=params,
                grad_checkpointing=bool(cfg.model.get('grad_checkpointing') or
                                        (cfg.model.get('backbone') or {}).get('grad_checkpointing')),
                head_checkpointing=bool(cfg.model.get('head_checkpointing')),
                stochastic_depth_expected_rows=assumed_fixed,
                peak_bytes=int(peak[device]['Total']), peak_by_kind=kinds)


__all__ = ['sdpa_flop_jit', 'count_flops', 'count_params', 'build_model', 'default_input_size', 'analysis_parts',
           'analyze', 'measure_throughput', 'throughput', 'training_config', 'estimate_training_memory']
