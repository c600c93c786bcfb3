"""Sharded training (FSDP) with MMEngine's own wrapper, ``MMFullyShardedDataParallel``, under our Runner.

``--fsdp`` (or ``model_wrapper_cfg=dict(type='MMFullyShardedDataParallel', ...)`` in a config) shards parameters,
gradients and optimiser state across the processes of a torchrun / slurm job; each residual block (the units of
activation checkpointing, :func:`cosub_seg.models.checkpointing.residual_blocks`) is its own FSDP unit, so only one
block's full weights exist at a time. ``use_orig_params=True`` keeps every parameter a ``nn.Parameter`` of its own
(a view of the process's shard): the optimiser constructors (weight decay, layer-wise lr decay) see the same names
as without FSDP.

Why not MMEngine's ``FlexibleRunner`` with its ``FSDPStrategy``: our hooks (atomic checkpoints, exact resume,
preemption, the EMA) are written for the Runner, the strategy writes checkpoints with a plain ``torch.save`` to the
final name, and MMEngine's ``EMAHook`` deep-copies the wrapped module. The Runner itself assumes an unsharded module
in four places, which :class:`cosub_seg.runtime.console.CosubRunner` overrides when the model is sharded:
``save_checkpoint`` (``@master_only``: the gather below is a collective every process must join),
``load_checkpoint`` (the model and optimiser states are loaded through FSDP), ``_init_model_weights``
(``init_weights`` runs before the model is sharded) and ``build_optim_wrapper`` (the constructors see full shapes;
gradient clipping by the norm over all shards).

Checkpoints are **consolidated**: the same file a DDP run writes (``state_dict`` with the model's own keys,
``optimizer`` keyed by parameter names, ``ema_state_dict``), written once by the main process through the atomic
backend. So a sharded pretraining hands its checkpoint to segmentation, to the converters and to a resume with
another number of processes unchanged (FSDP re-shards the optimiser state on loading). The price is that the main
process holds the full model and optimiser state in CPU memory while saving (ViT-H/14: about 7.5 GB); sharded
files (one per process, each tied to its world size) would save that, and would need a multi-file atomic commit.
"""
import copy
import functools
import logging
import re
from contextlib import contextmanager
from collections import OrderedDict
from typing import Dict, FrozenSet, Iterator, List, Optional

import torch
import torch.nn as nn
from mmengine.dist import broadcast
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import FUNCTIONS
from mmengine.runner.checkpoint import _load_checkpoint
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.fsdp import FullyShardedDataParallel

from ..errors import ConfigError
from ..models.stochastic_depth import own_slots

FSDP_WRAPPER = 'MMFullyShardedDataParallel'
# What --fsdp sets: every residual block an FSDP unit, the rest (embeddings, norms, heads) in the root unit.
DEFAULT_FSDP_CFG = dict(type=FSDP_WRAPPER, auto_wrap_policy='residual_block_wrap_policy', use_orig_params=True)


@FUNCTIONS.register_module()
def residual_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int,
                               top: FrozenSet[int] = frozenset()) -> bool:
    """FSDP auto-wrap policy: a module holding a stochastic-depth slot (a residual block of any of the six families,
    the blocks activation checkpointing recomputes) becomes an FSDP unit, and so does each module of ``top`` (their
    ``id``s; CosubRunner fills it in with :func:`top_units`) with parameters left, e.g. the backbone's embeddings
    and norms, the decode head's convolutions.

    The root unit is then left without parameters of its own. That matters: FSDP keeps the root's full weights after
    a forward pass, expecting a backward pass, and a write to its shards after a forward without one (the average
    swapped back after validation) was lost, the next forward using the stale full weights (measured, torch 2.14)."""
    if recurse:
        return True
    return bool(own_slots(module)) or (id(module) in top and nonwrapped_numel > 0)


def top_units(model: nn.Module) -> List[nn.Module]:
    """The modules :func:`residual_block_wrap_policy` makes units besides the blocks: each child of the model, but
    for a head its segmentor calls through ``loss()`` / ``predict()`` (mmseg's decode heads), not ``forward()``, which
    FSDP does not see: there, each module of the head holding weights of its own (its convolutions and norms,
    called through their forward)."""
    units = []
    for child in model.children():
        if callable(getattr(child, 'loss', None)):
            units += [m for m in child.modules() if any(True for _ in m.parameters(recurse=False))]
        else:
            units.append(child)
    return units


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FullyShardedDataParallel)


def wants_fsdp(cfg) -> bool:
    return (cfg.get('model_wrapper_cfg') or {}).get('type') == FSDP_WRAPPER


def _options(model: nn.Module, **kwargs) -> StateDictOptions:
    # On a GPU the gathered tensors go to the CPU, and only the main process keeps them. On a CPU they must not:
    # measured with torch 2.14 and gloo, cpu_offload=True there returned wrong optimiser moments (each tensor
    # overwritten by a later gather), so every process gets the full state, which is as big as the model's CPU copy.
    on_gpu = next(model.parameters()).is_cuda
    return StateDictOptions(full_state_dict=True, cpu_offload=on_gpu, **kwargs)


def gather_model_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The full (consolidated) state dict of a sharded model, with the module's own keys. A collective: every
    process calls it; on a GPU only the main process gets the tensors (the others an empty dict)."""
    # An OrderedDict, as nn.Module.state_dict returns (MMEngine's weights_to_cpu sets its _metadata).
    return OrderedDict(get_model_state_dict(model, options=_options(model)))


def _optimizer_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> List[str]:
    """The names of the optimiser's parameters, in the order ``optimizer.state_dict()`` numbers them (group by
    group): the numbering a checkpoint of an unsharded run uses."""
    names = {id(param): clean_key(name) for name, param in model.named_parameters()}
    return [names[id(param)] for group in optimizer.param_groups for param in group['params']]


def gather_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The full optimiser state of a sharded model (a collective, as above), numbered as ``optimizer.state_dict()``
    of the unsharded model numbers it, so a DDP run can resume from it and the other way round."""
    state = get_optimizer_state_dict(model, optimizer, options=_options(model))
    if not state:
        return state
    index = {name: i for i, name in enumerate(_optimizer_names(model, optimizer))}
    return dict(state={index[name]: value for name, value in state['state'].items()},
                param_groups=[dict(group, params=[index[name] for name in group['params']])
                              for group in state['param_groups']])


def load_model_state(model: nn.Module, state: Dict[str, torch.Tensor], strict: bool = False) -> None:
    """Loads a full state dict (every process passes the whole of it) into a sharded model, logging the keys that
    did not match as MMEngine's loader does."""
    own = set(model_state_keys(model))
    missing = sorted(own - set(state))
    unexpected = sorted(set(state) - own)
    if strict and (missing or unexpected):
        raise RuntimeError(f'the checkpoint does not match the model: missing keys {missing[:8]}, unexpected keys '
                           f'{unexpected[:8]}')
    set_model_state_dict(model, {k: v for k, v in state.items() if k in own},
                         options=_options(model, strict=False))
    if missing or unexpected:
        print_log(f'missing keys in source state_dict: {", ".join(missing)}; unexpected key in source state_dict: '
                  f'{", ".join(unexpected)}', logger='current', level=logging.WARNING)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Loads a full optimiser state (numbered as :func:`gather_optimizer_state` writes it; every process passes the
    whole of it): FSDP keeps each process's shard, whatever the number of processes that wrote it."""
    names = _optimizer_names(model, optimizer)
    count = sum(len(group['params']) for group in state['param_groups'])
    if len(names) != count:
        raise ConfigError(f'the checkpoint\'s optimiser state has {count} '
                          f'parameters and this run\'s optimiser {len(names)}: it was written for another model or '
                          'optimiser set-up')
    named = dict(state={names[i]: value for i, value in state['state'].items()},
                 param_groups=[dict(group, params=[names[i] for i in group['params']])
                               for group in state['param_groups']])
    set_optimizer_state_dict(model, optimizer, named, options=_options(model))


def model_state_keys(model: nn.Module) -> List[str]:
    """The state-dict keys of the unwrapped model, without gathering anything: its parameters and its persistent
    buffers (a data preprocessor's mean and std are not saved)."""
    keys = [name for name, _ in model.named_parameters()]
    for prefix, module in model.named_modules():
        transient = getattr(module, '_non_persistent_buffers_set', set())
        keys += [f'{prefix}.{name}' if prefix else name for name, _ in module.named_buffers(recurse=False)
                 if name not in transient]
    return [clean_key(name) for name in keys]


def clean_key(name: str) -> str:
    """A parameter name of the wrapped model as the unwrapped model names it."""
    return name.replace('_fsdp_wrapped_module.', '').replace('_checkpoint_wrapped_module.', '')


class ShardedEMA:
    """The exponential moving average of a sharded model, itself sharded: each process averages its own shard of
    every parameter (``use_orig_params=True`` makes each parameter a view of it) and its copy of the buffers (FSDP
    keeps buffers whole on every process). The same arithmetic as MMEngine's ``ExponentialMovingAverage``
    (``avg.lerp_(src, momentum)``, copy at step 0, every ``interval`` steps), so a sharded run averages as an
    unsharded one does.

    Swapping the average into the model (:meth:`swap`) is a local copy; :meth:`gather` and :meth:`load` go through
    the model, so the checkpoint's ``ema_state_dict`` has the format MMEngine's ``EMAHook`` writes (``module.<key>``
    and ``steps``)."""

    def __init__(self, model: nn.Module, momentum: float, interval: int = 1, update_buffers: bool = False):
        if is_sharded(model):
            in_root = [clean_key(name) for name, _ in model.named_parameters()
                       if name.count('_fsdp_wrapped_module.') == 1]
            if in_root:
                raise ConfigError(
                    f'the FSDP root unit holds parameters ({", ".join(in_root[:4])}...), whose shards the average '
                    'cannot swap (FSDP keeps the root\'s full weights after a forward pass): use '
                    "model_wrapper_cfg.auto_wrap_policy='residual_block_wrap_policy' (what --fsdp sets), or a policy "
                    'that wraps every parameter in a unit below the root')
        self.model, self.momentum, self.interval, self.update_buffers = model, momentum, interval, update_buffers
        self.steps = 0
        self.average = [t.detach().clone() for t in self._tensors()]

    def _tensors(self) -> List[torch.Tensor]:
        tensors = [p for p in self.model.parameters()]
        return tensors + [b for b in self.model.buffers()] if self.update_buffers else tensors

    def copy_from_model(self) -> None:
        for avg, src in zip(self.average, self._tensors()):
            avg.copy_(src.detach())

    def update(self) -> None:
        if self.steps == 0:
            self.copy_from_model()
        elif self.steps % self.interval == 0:
            for avg, src in zip(self.average, self._tensors()):
                if avg.dtype.is_floating_point:
                    avg.lerp_(src.detach(), self.momentum)
        self.steps += 1

    def swap(self) -> None:
        """Exchanges the averaged weights with the model's (in place, on every process's shard)."""
        for avg, src in zip(self.average, self._tensors()):
            tmp = avg.clone()
            avg.copy_(src.detach())
            src.data.copy_(tmp)

    def gather(self) -> dict:
        """The full averaged state as MMEngine's ``EMAHook`` checkpoints it (a collective)."""
        self.swap()
        try:
            state = gather_model_state(self.model)
        finally:
            self.swap()
        ema = {f'module.{key}': value for key, value in state.items()}
        if state:
            ema['steps'] = torch.tensor(self.steps)
        return ema

    def load(self, ema_state: dict) -> None:
        """Loads a checkpoint's ``ema_state_dict`` (full, ``module.<key>``) into the shards of the average."""
        self.steps = int(ema_state.get('steps', 0))
        state = {key[len('module.'):]: value for key, value in ema_state.items() if key.startswith('module.')}
        self.swap()  # the model's own weights go to the average's place while the model loads the average
        try:
            load_model_state(self.model, state, strict=False)
        finally:
            self.swap()


def use_sharded_grad_clipping(optim_wrapper, model: nn.Module) -> None:
    """Gradient clipping by norm over all shards: ``FSDP.clip_grad_norm_`` instead of torch's per-process norm,
    which would see one process's shard only. Clipping by value is element-wise and stays as it is."""
    if getattr(optim_wrapper, 'clip_grad_kwargs', None) and optim_wrapper.clip_func is torch.nn.utils.clip_grad_norm_:
        def clip(params, max_norm, norm_type=2.0, **kwargs):
            return model.clip_grad_norm_(max_norm, norm_type)

        optim_wrapper.clip_func = clip


@contextmanager
def _units_unwrapped(model: nn.Module) -> Iterator[None]:
    """Puts each FSDP unit's module in its wrapper's place for a while, so that ``model.module`` names its
    parameters (the same objects) as the unwrapped model does."""
    swapped = []
    for parent in list(model.module.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, FullyShardedDataParallel):
                parent._modules[name] = child.module
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in reversed(swapped):
            parent._modules[name] = child


class _GatheredModel(nn.Module):
    """Stands for a sharded model while the Runner's ``save_checkpoint`` builds the file: its ``state_dict()`` is the
    consolidated state gathered beforehand (the real one would start a collective on the main process alone)."""

    def __init__(self, state: Dict[str, torch.Tensor]):
        super().__init__()
        self._gathered = state

    def state_dict(self, *args, **kwargs):
        return self._gathered


class ShardedRunnerMixin:
    """What MMEngine's Runner needs for a sharded (FSDP) model; each method is the Runner's own when the model is
    not sharded. Mixed into :class:`cosub_seg.runtime.console.CosubRunner`."""

    _gathered_optimizer: Optional[dict] = None
    _unsharded_shapes: Optional[Dict[str, torch.Size]] = None
    _model_to_initialise: Optional[nn.Module] = None

    def wrap_model(self, model_wrapper_cfg, model):
        if model_wrapper_cfg is None or model_wrapper_cfg.get('type') != FSDP_WRAPPER or not self.distributed:
            return super().wrap_model(model_wrapper_cfg, model)
        self._unsharded_shapes = {key: value.shape for key, value in model.state_dict().items()}
        model_wrapper_cfg = dict(model_wrapper_cfg)
        if model_wrapper_cfg.get('auto_wrap_policy') == 'residual_block_wrap_policy':
            model_wrapper_cfg['auto_wrap_policy'] = functools.partial(residual_block_wrap_policy,
                                                                      top=frozenset(map(id, top_units(model))))
        if 'device_id' not in model_wrapper_cfg:
            model_wrapper_cfg['device_id'] = (torch.device('cuda', torch.cuda.current_device())
                                              if torch.cuda.is_available() else torch.device('cpu'))
        # MMEngine's initialisers call module.apply, which a sharded unit refuses inside a gather of the full weights:
        # _init_model_weights initialises this unsharded copy (on the CPU, where the model is built) instead, at the
        # point of the run where the Runner initialises an unsharded model, so both draw the same random numbers.
        self._model_to_initialise = copy.deepcopy(model) if hasattr(model, 'init_weights') else None
        wrapped = super().wrap_model(model_wrapper_cfg, model)
        total = sum(shape.numel() for key, shape in self._unsharded_shapes.items()
                    if not key.endswith('num_batches_tracked'))
        held = sum(p.numel() for p in wrapped.parameters()) + sum(b.numel() for b in wrapped.buffers())
        self.logger.info(f'FSDP: {len(FullyShardedDataParallel.fsdp_modules(wrapped))} units, this process holds '
                         f'{held:,} of {total:,} parameters and buffers')
        return wrapped

    def state_shapes(self) -> Dict[str, torch.Size]:
        """The shapes of the model's state-dict entries, unsharded (what a checkpoint holds)."""
        if self._unsharded_shapes is not None and is_sharded(self.model):
            return dict(self._unsharded_shapes)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        return {key: value.shape for key, value in model.state_dict().items()}

    def _init_model_weights(self) -> None:
        if not is_sharded(self.model):
            return super()._init_model_weights()
        model, self._model_to_initialise = self._model_to_initialise, None
        if model is None:
            return
        model.init_weights()
        state = model.state_dict()
        for tensor in state.values():  # the main process's weights, as MMEngine's Runner does after initialising
            broadcast(tensor)
        load_model_state(self.model, state, strict=True)

    def build_optim_wrapper(self, optim_wrapper):
        if not is_sharded(self.model) or isinstance(optim_wrapper, OptimWrapper):
            return super().build_optim_wrapper(optim_wrapper)
        # The constructors decide weight decay by a parameter's shape (1-D: none), and a sharded parameter is a 1-D
        # slice; they place parameters by name (layer-wise lr decay, custom_keys), and a unit inserts its wrapper
        # into the names. They see the full weights (the same Parameter objects, use_orig_params) under the model's
        # own names while they group them.
        with FullyShardedDataParallel.summon_full_params(self.model, writeback=False), _units_unwrapped(self.model):
            wrapper = super().build_optim_wrapper(optim_wrapper)
        if isinstance(wrapper, OptimWrapper):
            if isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype in (None, torch.float16):
                raise ConfigError('a sharded (FSDP) run cannot use float16 with loss scaling (each process would '
                                  'decide alone to skip a step): use --amp --amp-dtype bfloat16, or no --amp')
            use_sharded_grad_clipping(wrapper, self.model)
        return wrapper

    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True, save_param_scheduler=True,
                        meta=None, by_epoch=True, backend_args=None):
        kwargs = dict(file_client_args=file_client_args, save_optimizer=save_optimizer,
                      save_param_scheduler=save_param_scheduler, meta=meta, by_epoch=by_epoch,
                      backend_args=backend_args)
        if not is_sharded(self.model):
            return super().save_checkpoint(out_dir, filename, **kwargs)
        # Every process: the collectives that gather the consolidated state (the hooks add theirs: the EMA's).
        model = self.model
        state = gather_model_state(model)
        self._gathered_optimizer = (gather_optimizer_state(model, self.optim_wrapper.optimizer)
                                    if save_optimizer and isinstance(self.optim_wrapper, OptimWrapper) else None)
        self.call_hook('gather_checkpoint')
        # The main process: the Runner's own save_checkpoint (@master_only) writes the file from the gathered state.
        self.model = _GatheredModel(state)
        try:
            super().save_checkpoint(out_dir, filename, **kwargs)
        finally:
            self.model, self._gathered_optimizer = model, None

    def call_hook(self, fn_name: str, **kwargs) -> None:
        if fn_name == 'before_save_checkpoint' and self._gathered_optimizer is not None:
            # The Runner put this process's shard of the optimiser state in; the full one replaces it (the rest of
            # the wrapper's state, e.g. a loss scaler, stays).
            kwargs['checkpoint']['optimizer'] = {**kwargs['checkpoint'].get('optimizer', {}),
                                                 **self._gathered_optimizer}
        super().call_hook(fn_name, **kwargs)

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):  # noqa: B006  (the Runner's own default)
        if not is_sharded(self.model):
            return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                           revise_keys=revise_keys)
        checkpoint = _load_checkpoint(filename, map_location='cpu')
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        state = checkpoint.get('state_dict', checkpoint)
        for pattern, replacement in revise_keys:
            state = {re.sub(pattern, replacement, key): value for key, value in state.items()}
        load_model_state(self.model, state, strict=strict)
        if self._resume and 'optimizer' in checkpoint and isinstance(self.optim_wrapper, OptimWrapper):
            # Loaded here, where the model is at hand; the Runner's resume then loads this process's part again.
            full = checkpoint['optimizer']
            load_optimizer_state(self.model, self.optim_wrapper.optimizer,
                                 {key: full[key] for key in ('state', 'param_groups')})
            checkpoint['optimizer'] = {**full, **self.optim_wrapper.optimizer.state_dict()}
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


__all__ = ['FSDP_WRAPPER', 'DEFAULT_FSDP_CFG', 'residual_block_wrap_policy', 'top_units', 'is_sharded', 'wants_fsdp',
           'gather_model_state', 'gather_optimizer_state', 'load_model_state', 'load_optimizer_state', 'clean_key',
           'ShardedEMA', 'use_sharded_grad_clipping', 'ShardedRunnerMixin']
