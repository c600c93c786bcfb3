"""What the training tools share: their command line and the config changes it asks for."""
import argparse
import difflib
import importlib.util
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .checkpointing import find_resumable_checkpoint
from .dist import setup_distributed


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or without a path from the newest checkpoint of the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 with loss scaling on a GPU, bf16 autocast on a CPU')
    parser.add_argument('--amp-dtype', choices=['float16', 'bfloat16'], default=None,
                        help='autocast dtype with --amp (default: float16 on a GPU, bfloat16 on a CPU)')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile the model (MMEngine's compile=True); pair it with "
                        "model.drop_path_sampling='fixed' (static shapes) when stochastic depth skips rows")
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by (total batch / auto_scale_lr.base_batch_size)')
    parser.add_argument('--tensorboard', action='store_true',
                        help="also log scalars to TensorBoard (<work dir>/<timestamp>/vis_data/); needs tensorboard")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_dataloader.batch_size=32')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def apply_amp(cfg: Config, dtype=None) -> None:
    """Switches the config's optimiser wrapper to mixed precision on the device this run will use."""
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type="OptimWrapper", the config has {wrapper.type!r}')
    if torch.cuda.is_available():
        wrapper.type = 'AmpOptimWrapper'
        wrapper.dtype = dtype or 'float16'
        wrapper.loss_scale = 'dynamic'
    else:
        if dtype == 'float16':
            raise ValueError('--amp-dtype float16 needs a GPU (loss scaling); use bfloat16 on a CPU')
        wrapper.type = 'AutocastOptimWrapper'
        wrapper.dtype = 'bfloat16'


def enable_tensorboard(cfg: Config) -> None:
    """Adds MMEngine's TensorboardVisBackend to the config's visualizer, next to its LocalVisBackend (so the
    scalars.json the pictures are drawn from is still written). Fails here, before training starts, when the
    tensorboard package is missing: MMEngine would only fail at the first logged scalar."""
    if importlib.util.find_spec('tensorboard') is None:
        raise ModuleNotFoundError("--tensorboard needs the tensorboard package: pip install 'cosub_seg[tensorboard]' "
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


class UnknownConfigKeyError(KeyError):
    """A ``--cfg-options`` key that the config does not have (printed without KeyError's quotes)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _check_option_key(tree: dict, key: str, source: str) -> None:
    parts = key.split('.')
    node = tree
    for depth, part in enumerate(parts):
        where = '.'.join(parts[:depth]) or 'the top level'
        if isinstance(node, (list, tuple)):
            if not (part.isdigit() and int(part) < len(node)):
                raise UnknownConfigKeyError(f'--cfg-options {key}: {where} in {source} is a list of {len(node)} '
                                            f'items, and {part!r} is not an index of it')
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise UnknownConfigKeyError(f'--cfg-options {key}: {where} in {source} is a {type(node).__name__}, '
                                        f'not a dict with a key {part!r}')
        if part in node:
            node = node[part]
            continue
        # A new last key inside an existing dict is allowed (e.g. a module argument the config leaves at its default,
        # train_dataloader.dataset.indices): whatever takes that dict checks its keys when it is built.
        if depth == len(parts) - 1 and depth > 0:
            print_log(f'--cfg-options adds {key}, which {source} does not set', logger='current')
            return
        close = difflib.get_close_matches(part, [str(k) for k in node], n=3)
        hint = f' Did you mean {" or ".join(repr(c) for c in close)}?' if close else ''
        raise UnknownConfigKeyError(
            f'--cfg-options {key}: {source} has no key {part!r} at {where}, so this option would change nothing.'
            f'{hint} To add a new setting, write a config that inherits this one.')


def merge_cfg_options(cfg: Config, options: dict, source: str) -> None:
    """``cfg.merge_from_dict(options)``, refusing keys the config does not have: MMEngine would add them silently,
    and nothing would read a misspelt top-level key (``max_epoch``) or anything under a misspelt dict
    (``train_dataloder.batch_size``). A new last key inside an existing dict is accepted and logged: the module or
    function that takes that dict rejects an argument it does not know when it is built."""
    tree = cfg.to_dict()
    for key in options:
        _check_option_key(tree, key, source)
    cfg.merge_from_dict(options)


def config_from_args(args: argparse.Namespace) -> Config:
    """Loads the config and applies the command line to it."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config} does not exist')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        merge_cfg_options(cfg, args.cfg_options, args.config)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        apply_amp(cfg, args.amp_dtype)
    if args.compile:
        cfg.compile = True
    if args.tensorboard:
        enable_tensorboard(cfg)
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        # The newest complete checkpoint, whatever last_checkpoint says; none: start from the beginning.
        checkpoint = find_resumable_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if checkpoint is None:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}, training from the start', logger='current')
        cfg.resume, cfg.load_from = checkpoint is not None, checkpoint
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    use_bn_without_gpu(cfg.model)
    setup_distributed(cfg, args.launcher)
    return cfg
