"""What the tools share: their command line, loading a config with its overrides checked, and the training body."""
import argparse
import difflib
import importlib.util
import os
import os.path as osp

from typing import Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from ..errors import DEBUG_HELP, ConfigError, ConfigKeyError, MissingFileError, MissingPackageError
from ..models.seg_backbone import check_pretrained_checkpoint
from .checkpointing import find_resumable_checkpoint
from .console import build_runner
from .dist import setup_distributed, teardown_distributed
from .preemption import TrainingPreempted, preempted_marker
from .sharded import DEFAULT_FSDP_CFG, FSDP_WRAPPER, wants_fsdp
from .split_checks import check_split_configs


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or without a path from the newest checkpoint of the work dir '
                        '(the default where the work dir holds a preempted run: its preempted.json marker)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 with loss scaling on a GPU, bf16 autocast on a CPU')
    parser.add_argument('--amp-dtype', choices=['float16', 'bfloat16'], default=None,
                        help='autocast dtype with --amp (default: float16 on a GPU, bfloat16 on a CPU)')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile the model (MMEngine's compile=True); when stochastic depth skips rows, "
                        'pair it with static shapes: model.stochastic_depth.sampling=fixed (pretraining), '
                        'model.backbone.stochastic_depth.sampling=fixed (segmentation)')
    parser.add_argument('--fsdp', action='store_true',
                        help='shard weights, gradients and optimiser state across the processes (FSDP, each residual '
                        'block a unit; with --launcher pytorch or slurm); checkpoints stay whole files')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by (total batch / auto_scale_lr.base_batch_size)')
    parser.add_argument('--tensorboard', action='store_true',
                        help="also log scalars to TensorBoard (<work dir>/<timestamp>/vis_data/); needs tensorboard")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_dataloader.batch_size=32')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    return parser


def apply_amp(cfg: Config, dtype=None) -> None:
    """Switches the config's optimiser wrapper to mixed precision on the device this run will use."""
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ConfigError(f'--amp needs optim_wrapper.type="OptimWrapper", the config has {wrapper.type!r}')
    if torch.cuda.is_available():
        wrapper.type = 'AmpOptimWrapper'
        wrapper.dtype = dtype or 'float16'
        wrapper.loss_scale = 'dynamic'
    else:
        if dtype == 'float16':
            raise ConfigError('--amp-dtype float16 needs a GPU (loss scaling); use bfloat16 on a CPU')
        wrapper.type = 'AutocastOptimWrapper'
        wrapper.dtype = 'bfloat16'


def apply_fsdp(cfg: Config, launcher: str) -> None:
    """``--fsdp``: the config's model wrapper becomes MMEngine's ``MMFullyShardedDataParallel`` with every residual
    block a unit (``runtime/sharded.py``), unless the config already asks for FSDP with settings of its own."""
    if wants_fsdp(cfg):
        return
    if cfg.get('model_wrapper_cfg'):
        raise ConfigError(f'--fsdp: the config already sets model_wrapper_cfg={cfg.model_wrapper_cfg}; remove it, or '
                          f'set type={FSDP_WRAPPER!r} there instead of --fsdp')
    if launcher == 'none':
        print_log('--fsdp with one process (--launcher none): there is nothing to shard, the model is not wrapped',
                  logger='current', level=30)
    cfg.model_wrapper_cfg = dict(DEFAULT_FSDP_CFG)


def enable_tensorboard(cfg: Config) -> None:
    """Adds MMEngine's TensorboardVisBackend to the config's visualizer, next to its LocalVisBackend (so the
    scalars.json the pictures are drawn from is still written). Fails here, before training starts, when the
    tensorboard package is missing: MMEngine would only fail at the first logged scalar."""
    if importlib.util.find_spec('tensorboard') is None:
        raise MissingPackageError("--tensorboard needs the tensorboard package: pip install 'cosub_seg[tensorboard]' "
                                  '(or pip install tensorboard), or run without --tensorboard')
    backends = list(cfg.visualizer.get('vis_backends') or [])
    if not any(backend.get('type') == 'TensorboardVisBackend' for backend in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    cfg.visualizer.vis_backends = backends


def use_bn_without_gpu(cfg_node) -> None:
    """SyncBN needs GPUs: on a machine without one, every SyncBN in the config becomes BN."""
    if torch.cuda.is_available():
        return
    if isinstance(cfg_node, dict):
        if cfg_node.get('type') == 'SyncBN':
            cfg_node['type'] = 'BN'
        for value in cfg_node.values():
            use_bn_without_gpu(value)
    elif isinstance(cfg_node, (list, tuple)):
        for value in cfg_node:
            use_bn_without_gpu(value)


class UnknownConfigKeyError(ConfigKeyError):
    """A ``--cfg-options`` key that the config does not have (printed without KeyError's quotes)."""


# Top-level keys that something reads after the config file is parsed: MMEngine's Runner (Runner.from_cfg and the
# loops), the tools (runner_type, tta_model, tta_pipeline) and mmseg's inference API (test_pipeline). Any other
# top-level key of a config is a variable of the file (num_classes, crop_size, data_root, max_iters...), already
# used where the file refers to it: overriding it afterwards changes nothing.
READ_TOP_LEVEL_KEYS = frozenset((
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg',
    'auto_scale_lr', 'optim_wrapper', 'param_scheduler', 'val_evaluator', 'test_evaluator', 'default_hooks',
    'custom_hooks', 'load_from', 'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer',
    'default_scope', 'randomness', 'experiment_name', 'compile', 'activation_checkpointing', 'efficient_conv_bn_eval',
    'model_wrapper_cfg', 'sync_bn', 'find_unused_parameters', 'resource_limit', 'runner_type', 'custom_imports',
    'tta_model', 'tta_pipeline', 'test_pipeline'))
WRAPPERS = {'CheckedDataset': frozenset(('type', 'dataset', 'on_bad_sample', 'check_files', 'max_failures_in_a_row'))}


def _leaves(node, prefix=''):
    """(dotted key, value) of every entry of a config tree, dicts and lists included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        path = f'{prefix}.{key}' if prefix else str(key)
        yield path, value
        yield from _leaves(value, path)


def _check_variable(tree: dict, key: str, source: str) -> None:
    """Refuses an option on a top-level variable of the config file, naming the keys that took its value."""
    name = key.split('.')[0]
    if name in READ_TOP_LEVEL_KEYS or name not in tree:
        return
    if name == 'data_preprocessor' and 'data_preprocessor' not in (tree.get('model') or {}):
        return  # the Runner gives it to a model without one of its own
    value = tree[name]
    read = {k: v for k, v in tree.items() if k in READ_TOP_LEVEL_KEYS}  # what other variables hold is not read either
    same_name = [path for path, _ in _leaves(read) if path.rsplit('.', 1)[-1] == name and '.' in path]
    same_value = [path for path, v in _leaves(read) if '.' in path and path not in same_name and v == value
                  and not isinstance(value, (bool, type(None)))]
    users = same_name + same_value[:max(0, 8 - len(same_name))]
    where = (f' Set the keys that took its value instead, e.g. {" ".join(f"{u}=..." for u in users)}' if users else
             ' Set the keys that use it instead (see the config file)')
    raise UnknownConfigKeyError(
        f'--cfg-options {key}: {name} is a variable of {source}, used where the file refers to it while the file is '
        f'read; changing it now would change nothing.{where}, or write a config that inherits this one and sets '
        f'{name} there.')


def _check_option_key(tree: dict, key: str, source: str) -> str:
    """Checks ``key`` against the config tree; returns it, with an option on a CheckedDataset's dataset settings
    (``train_dataloader.dataset.data_root``) moved to the dataset it wraps (``...dataset.dataset.data_root``)."""
    _check_variable(tree, key, source)
    parts = key.split('.')
    node = tree
    depth = 0
    while depth < len(parts):
        part = parts[depth]
        where = '.'.join(parts[:depth]) or 'the top level'
        if isinstance(node, (list, tuple)):
            if not (part.isdigit() and int(part) < len(node)):
                raise UnknownConfigKeyError(f'--cfg-options {key}: {where} in {source} is a list of {len(node)} '
                                            f'items, and {part!r} is not an index of it')
            node = node[int(part)]
            depth += 1
            continue
        if not isinstance(node, dict):
            raise UnknownConfigKeyError(f'--cfg-options {key}: {where} in {source} is a {type(node).__name__}, '
                                        f'not a dict with a key {part!r}')
        own = WRAPPERS.get(node.get('type'))
        if own is not None and part not in own and isinstance(node.get('dataset'), dict):
            # The usual mmseg form for a setting of the wrapped dataset: it goes one level down.
            moved = '.'.join(parts[:depth] + ['dataset'] + parts[depth:])
            print_log(f'--cfg-options {key}: {where} is a {node["type"]} wrapping a '
                      f'{node["dataset"].get("type", "dataset")}; setting {moved}', logger='current')
            return _check_option_key(tree, moved, source)
        if part in node:
            node = node[part]
            depth += 1
            continue
        # A new last key inside an existing dict is allowed (e.g. a module argument the config leaves at its default,
        # train_dataloader.dataset.indices): whatever takes that dict checks its keys when it is built.
        if depth == len(parts) - 1 and depth > 0:
            print_log(f'--cfg-options adds {key}, which {source} does not set', logger='current')
            return key
        close = difflib.get_close_matches(part, [str(k) for k in node], n=3)
        hint = f' Did you mean {" or ".join(repr(c) for c in close)}?' if close else ''
        raise UnknownConfigKeyError(
            f'--cfg-options {key}: {source} has no key {part!r} at {where}, so this option would change nothing.'
            f'{hint} To add a new setting, write a config that inherits this one.')
    return key


def merge_cfg_options(cfg: Config, options: dict, source: str) -> None:
    """``cfg.merge_from_dict(options)``, refusing keys the config does not have: MMEngine would add them silently,
    and nothing would read a misspelt top-level key (``max_epoch``) or anything under a misspelt dict
    (``train_dataloder.batch_size``). A new last key inside an existing dict is accepted and logged: the module or
    function that takes that dict rejects an argument it does not know when it is built. A top-level variable of the
    config file (``num_classes``) is refused with the keys that took its value. A setting of the dataset a
    CheckedDataset wraps, given on the wrapper (``train_dataloader.dataset.data_root``, mmseg's usual form), is
    applied to the wrapped dataset."""
    tree = cfg.to_dict()
    cfg.merge_from_dict({_check_option_key(tree, key, source): value for key, value in options.items()})


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None) -> Config:
    """The config file at ``path`` with the ``--cfg-options`` applied (checked: :func:`merge_cfg_options`) and its
    work dir set: ``work_dir``, else the file's own, else ``work_dirs/<config name>``."""
    if not osp.isfile(path):
        raise MissingFileError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options, path)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def set_cublas_workspace_for_determinism(cfg: Config) -> None:
    """``randomness.deterministic=True`` makes MMEngine call ``torch.use_deterministic_algorithms(True)``, with which
    torch releases before deterministic cuBLAS workspaces (2.4 to at least 2.8, all within our requirement) refuse
    every CUDA matrix product unless ``CUBLAS_WORKSPACE_CONFIG`` is ``:4096:8`` or ``:16:8`` before the first one:
    a deterministic GPU run stopped at its first layer. Sets ``:4096:8`` (NVIDIA's choice for reproducible results)
    where the variable is unset; a value already set is kept."""
    if (cfg.get('randomness') or {}).get('deterministic'):
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')


def prepare_run(cfg: Config, launcher: str, local_rank: int = 0) -> None:
    """What every run does last before the Runner is built: SyncBN becomes BN without a GPU, the cuBLAS workspace a
    deterministic run needs, and the process joins its distributed group (``launcher`` 'none', 'pytorch' or
    'slurm')."""
    if launcher != 'slurm':  # slurm gives each process its local rank (SLURM_LOCALID)
        os.environ.setdefault('LOCAL_RANK', str(local_rank))
    set_cublas_workspace_for_determinism(cfg)
    use_bn_without_gpu(cfg.model)
    setup_distributed(cfg, launcher)


def config_from_args(args: argparse.Namespace) -> Config:
    """Loads the config and applies the training command line (:func:`add_train_args`) to it."""
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if args.amp:
        apply_amp(cfg, args.amp_dtype)
    if args.compile:
        cfg.compile = True
    if args.tensorboard:
        enable_tensorboard(cfg)
    if args.fsdp:
        apply_fsdp(cfg, args.launcher)
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    marker = preempted_marker(cfg.work_dir) if args.resume is None else None
    if marker is not None:
        # The work dir holds a run stopped by a preemption signal (runtime/preemption.py): the same command line,
        # e.g. the requeued slurm job's, continues it.
        print_log(f'{cfg.work_dir} holds a preempted run (iteration {marker.get("iteration", "?")}, '
                  f'{marker.get("signal", "a signal")}): resuming from its newest complete checkpoint',
                  logger='current', level=30)
    if args.resume == 'auto' or marker is not None:
        # The newest complete checkpoint, whatever last_checkpoint says; none: start from the beginning.
        checkpoint = find_resumable_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if checkpoint is None:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}, training from the start', logger='current')
        cfg.resume, cfg.load_from = checkpoint is not None, checkpoint
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    prepare_run(cfg, args.launcher, args.local_rank)
    return cfg


def add_finetune_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--checkpoint', metavar='PATH',
                        help='the weights to fine-tune from (model.init_cfg.checkpoint): a checkpoint of '
                        'tools/pretrain.py or tools/finetune.py, a DeiT III / timm file or a .safetensors file; '
                        'position embeddings are resampled to the config\'s resolution and the classifier is '
                        'replaced when the class count differs')
    return parser


def apply_finetune_args(cfg: Config, args: argparse.Namespace) -> None:
    """``--checkpoint PATH`` of the fine-tuning tool: the model starts from PATH."""
    if cfg.model.get('type') != 'CosubClassifier':
        raise ConfigError(f'{args.config} is not a classification config (model.type={cfg.model.get("type")!r}): '
                          'fine-tune segmentation with tools/train_seg.py')
    if args.checkpoint:
        cfg.model.init_cfg = dict(type='Pretrained', checkpoint=args.checkpoint)
    init_cfg = cfg.model.get('init_cfg') or {}
    if init_cfg.get('type') != 'Pretrained' and not args.resume and preempted_marker(cfg.work_dir) is None:
        raise ConfigError(f'{args.config} names no checkpoint to fine-tune from: give one with --checkpoint PATH '
                          '(or set model.init_cfg in the config)')


def run_training(argv: Optional[Sequence[str]], description: str, finetune: bool = False) -> None:
    """The body of the training tools (``tools/pretrain.py``, ``tools/finetune.py``, ``tools/train_seg.py``): parse
    the command line, load the config, check before anything is built what can be checked (a pretrained checkpoint
    the model or its backbone names, the validation split), then train with the Runner. ``finetune`` adds
    ``--checkpoint`` (:func:`add_finetune_args`). A run stopped by a preemption signal exits with
    :data:`cosub_seg.runtime.preemption.PREEMPTED_EXIT_STATUS` (``TrainingPreempted`` is a ``SystemExit``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(parser)
    if finetune:
        add_finetune_args(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    if finetune:
        apply_finetune_args(cfg, args)
    check_pretrained_checkpoint(cfg.model)
    check_split_configs(cfg, splits=('val', ))
    runner = build_runner(cfg)
    try:
        runner.train()
    except TrainingPreempted as stop:
        # Every process stopped after the same step with the checkpoint written; a distributed run leaves through
        # the same exit as a finished one (os._exit after a barrier), with the preemption status.
        teardown_distributed(stop.code)
        raise
    teardown_distributed()
