r"""Which backbone is better? Frozen-backbone probes of several checkpoints, side by side (issue 14).

For each checkpoint: the frozen features of the train and val splits of an ImageNet-style folder
(``DIR/train/<class>/``, ``DIR/val/<class>/``), then DINO's weighted kNN (k = 10, 20, 100) and DINOv2's linear probe
(learning rate chosen on a held-out part of the training features, one run per ``--seeds``), and with
``--seg-config`` the linear segmentation probe (``configs/probe/``, run through ``tools/train_seg.py``, its last val
mIoU). One table (markdown and JSON) and one chart (a panel per probe, a bar per backbone, seed spread as error bars).

The network comes from the config stored in our checkpoints (MMEngine writes it into ``meta``), or from ``--config``
for any other weights file (a timm state dict, a DeiT III release, safetensors). Images go through the config's
``test_pipeline`` and the model's data preprocessor.

Examples:
    cosub-compare-backbones work_dirs/k2/epoch_15.pth work_dirs/k1/epoch_15.pth --names cosub plain \
        --data data/digits --out-dir work_dirs/compare
    cosub-compare-backbones k2_s0/epoch_15.pth k2_s1/epoch_15.pth k1_s0/epoch_15.pth k1_s1/epoch_15.pth \
        --names k2-0 k2-1 k1-0 k1-1 --groups cosub cosub plain plain --data data/digits
    cosub-compare-backbones A.pth B.pth --data data/digits --seg-config \
        configs/probe/linear-seg_deit3-tiny_digitscenes.py --seg-options train_cfg.max_iters=300
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np
import torch

from cosub_seg.cli import tool
from cosub_seg.errors import DEBUG_HELP, ConfigError, DataError, MissingFileError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='+', help='checkpoints to compare')
    parser.add_argument('--data', required=True, help='ImageNet-style folder with train/ and val/')
    parser.add_argument('--names', nargs='+', help='one name per checkpoint (default: the file names)')
    parser.add_argument('--groups', nargs='+', metavar='GROUP',
                        help='one group per checkpoint (e.g. the recipe of runs of several seeds): the table adds '
                        "each group's mean ± sample std over its checkpoints, and the JSON a 'groups' entry")
    parser.add_argument('--config', help="the pretraining config, for checkpoints that do not hold theirs")
    parser.add_argument('--features', nargs='+', default=None, choices=['cls', 'avgpool', 'cls+avgpool'],
                        help='feature kinds (kNN uses the first; the linear probe chooses among all); default: the '
                        'class token, or the average-pooled tokens of a network without one')
    parser.add_argument('--ks', nargs='+', type=int, default=[10, 20, 100], help='kNN neighbour counts')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2], help='linear-probe seeds')
    parser.add_argument('--epochs', type=int, default=10, help='linear-probe epochs')
    parser.add_argument('--seg-config', help='also run this linear segmentation probe config per checkpoint')
    parser.add_argument('--seg-options', nargs='+', default=[], help='--cfg-options for the segmentation probe')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out-dir', default='work_dirs/compare_backbones')
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.names is not None and len(args.names) != len(args.checkpoints):
        parser.error(f'--names: {len(args.names)} names for {len(args.checkpoints)} checkpoints')
    if args.groups is not None and len(args.groups) != len(args.checkpoints):
        parser.error(f'--groups: {len(args.groups)} groups for {len(args.checkpoints)} checkpoints')
    return args


def model_config(checkpoint_path: str, config: Optional[str]):
    """The pretraining config of a checkpoint: ``config`` if given, else the one MMEngine stored in it."""
    from mmengine.config import Config

    from cosub_seg.checkpoint import load_checkpoint_file
    if config:
        return Config.fromfile(config)
    text = (load_checkpoint_file(checkpoint_path).get('meta') or {}).get('cfg')
    if not isinstance(text, str):
        raise ConfigError(f'{checkpoint_path} holds no config (it was not written by tools/pretrain.py): pass the '
                          'pretraining config that built it with --config')
    return Config.fromstring(text, file_format='.py')


def build_classifier(cfg, checkpoint_path: str):
    """The config's classifier with the checkpoint's weights in its backbone (any format cosub_seg reads)."""
    from mmengine.registry import DefaultScope

    from cosub_seg.checkpoint import extract_state_dict, load_checkpoint_file, timm_state_dict
    from cosub_seg.registry import MODELS
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        model = MODELS.build(cfg.model)
    state = timm_state_dict(extract_state_dict(load_checkpoint_file(checkpoint_path), checkpoint_path),
                            model.backbone)
    own = model.backbone.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ConfigError(f'{checkpoint_path} does not fit the {cfg.model.arch} its config builds: missing '
                          f'{missing[:5]}{" ..." if len(missing) > 5 else ""}; pass the config that made it with '
                          '--config')
    wrong = [k for k in own if state[k].shape != own[k].shape]
    if wrong:
        raise ConfigError(f'{checkpoint_path} does not fit {cfg.model.arch}: {wrong[0]} is '
                          f'{tuple(state[wrong[0]].shape)} in the file, {tuple(own[wrong[0]].shape)} in the model')
    model.backbone.load_state_dict({k: state[k] for k in own})
    return model.eval()


def split_batches(cfg, model, data_root: str, split: str, batch_size: int):
    """``(normalised images, labels)`` batches of ``data_root/split`` through the config's test pipeline."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    from torch.utils.data import DataLoader

    from cosub_seg.registry import DATASETS
    if not osp.isdir(osp.join(data_root, split)):
        raise MissingFileError(f'{osp.join(data_root, split)} does not exist: --data must hold train/ and val/ '
                               'class folders (python tools/prepare_data.py digits writes data/digits)')
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        dataset = DATASETS.build(dict(type='ImageFolderDataset', data_root=data_root, data_prefix=split,
                                      pipeline=cfg.test_pipeline, test_mode=True))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=pseudo_collate)
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        yield data['inputs'], torch.cat([s.gt_label for s in data['data_samples']])


def seg_probe(seg_config: str, checkpoint: str, work_dir: str, options: List[str]) -> float:
    """The linear segmentation probe through tools/train_seg.py; its last validation mIoU."""
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train_seg.py'), seg_config, '--work-dir', work_dir,
           '--cfg-options', f'model.backbone.init_cfg.checkpoint={checkpoint}', *options]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f'the segmentation probe of {checkpoint} failed ({" ".join(cmd)}):\n'
                        f'{proc.stderr.strip()[-2000:]}')
    scalars = sorted(p for p in (osp.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs)
                     if osp.basename(p) == 'scalars.json')
    values = [json.loads(line)['mIoU'] for path in scalars for line in open(path) if '"mIoU"' in line]
    if not values:
        raise DataError(f'the segmentation probe of {checkpoint} wrote no mIoU under {work_dir}')
    return float(values[-1])


def probe_one(path: str, args, name: Optional[str] = None) -> Dict[str, object]:
    """The probes of one checkpoint; ``name`` (the table's, default the file name) names its segmentation probe's
    work dir, so checkpoints of the same file name (``epoch_25.pth`` of several runs) do not share one."""
    from cosub_seg.evaluation.probes import extract_feature_sets, has_class_token, knn_evaluate, linear_probe
    cfg = model_config(path, args.config)
    model = build_classifier(cfg, path)
    kinds = args.features or (['cls'] if has_class_token(model.backbone) else ['avgpool'])
    choices = [(kind, 1) for kind in kinds]
    feats = {}
    for split in ('train', 'val'):
        feats[split] = extract_feature_sets(model.backbone, split_batches(cfg, model, args.data, split,
                                                                          args.batch_size),
                                            choices=choices, device=args.device)
    (train, train_labels), (val, val_labels) = feats['train'], feats['val']
    first = next(iter(train))
    result = dict(checkpoint=path, arch=cfg.model.arch, features=kinds, train_images=len(train_labels),
                  val_images=len(val_labels))
    knn = knn_evaluate(train[first], train_labels, val[first], val_labels, ks=args.ks, device=args.device)
    result['knn'] = {str(k): v for k, v in knn.items()}
    runs = [linear_probe(train, train_labels, val, val_labels, epochs=args.epochs, seed=seed, device=args.device)
            for seed in args.seeds]
    top1 = np.array([r.top1 for r in runs])
    result['linear'] = dict(top1_mean=float(top1.mean()), top1_std=float(top1.std(ddof=1)) if len(top1) > 1 else 0.0,
                            runs=[r.as_dict() for r in runs])
    if args.seg_config:
        name = re.sub(r'[^\w.+-]+', '_', name or osp.splitext(osp.basename(path))[0])
        result['linear_seg_miou'] = seg_probe(args.seg_config, path, osp.join(args.out_dir, 'seg', name),
                                              args.seg_options)
    return result


def metrics_of(result: Dict[str, object]) -> Dict[str, tuple]:
    """``{column: (value, spread or None)}`` of one backbone's results, in table order."""
    out = {f'kNN k={k} top-1': (v['top1'], None) for k, v in result['knn'].items()}
    out['linear top-1'] = (result['linear']['top1_mean'], result['linear']['top1_std'])
    if 'linear_seg_miou' in result:
        out['linear-seg mIoU'] = (result['linear_seg_miou'], None)
    return out


def group_summary(groups: List[str], results: List[dict]) -> Dict[str, dict]:
    """``{group: {column: {'mean', 'std', 'n'}}}``: each probe's mean and sample std (ddof 1; 0 for one member) over
    the checkpoints of a group, in the order groups first appear. Linear probes enter with their mean over seeds."""
    summary = {}
    for group in dict.fromkeys(groups):
        members = [metrics_of(r) for g, r in zip(groups, results) if g == group]
        summary[group] = {}
        for column in members[0]:
            values = np.array([m[column][0] for m in members])
            summary[group][column] = dict(mean=float(values.mean()), n=len(values),
                                          std=float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return summary


def write_table(names: List[str], results: List[dict], out_dir: str, seeds: List[int],
                groups: Optional[Dict[str, dict]] = None) -> str:
    columns = list(metrics_of(results[0]))
    lines = ['| backbone | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
    for name, result in zip(names, results):
        cells = []
        for value, spread in metrics_of(result).values():
            cells.append(f'{value:.2f}' if spread is None else f'{value:.2f} ± {spread:.2f}')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    text = ('Frozen-backbone probes (accuracy and mIoU in %; linear top-1: mean ± sample std over seeds '
            f'{", ".join(map(str, seeds))})\n\n' + '\n'.join(lines) + '\n')
    if groups:
        rows = ['| group | checkpoints | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 2) + '|']
        for group, stats in groups.items():
            cells = [f'{stats[c]["mean"]:.2f} ± {stats[c]["std"]:.2f}' for c in columns]
            rows.append(f'| {group} | {stats[columns[0]]["n"]} | ' + ' | '.join(cells) + ' |')
        text += ('\nBy group: mean ± sample std over the checkpoints of each group\n\n' + '\n'.join(rows) + '\n')
    with open(osp.join(out_dir, 'compare.md'), 'w') as f:
        f.write(text)
    return text


def write_chart(names: List[str], results: List[dict], out_file: str, dpi: int = 100) -> str:
    """One panel per probe, one bar per backbone; 4 x 4 inches per panel."""
    from cosub_seg.visualization.charts import _pyplot
    plt = _pyplot()
    columns = list(metrics_of(results[0]))
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 4), dpi=dpi, squeeze=False)
    for ax, column in zip(axes[0], columns):
        values = [metrics_of(r)[column] for r in results]
        ax.bar(range(len(names)), [v for v, _ in values], yerr=[s or 0 for _, s in values], capsize=4,
               color=[f'C{i}' for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_title(column)
        ax.set_ylim(0, 100)
    fig.tight_layout()
    fig.savefig(out_file)
    plt.close(fig)
    return out_file


@tool
def main(argv=None):
    args = parse_args(argv)
    names = args.names or [osp.splitext(osp.basename(p))[0] for p in args.checkpoints]
    if len(set(names)) < len(names):
        raise ConfigError(f'two checkpoints would share a name in the table ({", ".join(names)}): give each its own '
                          'with --names')
    for path in args.checkpoints:
        if not osp.isfile(path):
            raise MissingFileError(f'checkpoint {path} does not exist')
    os.makedirs(args.out_dir, exist_ok=True)
    results = []
    for name, path in zip(names, args.checkpoints):
        print(f'{name}: probing {path}', flush=True)
        results.append(probe_one(path, args, name))
    groups = group_summary(args.groups, results) if args.groups else None
    print(write_table(names, results, args.out_dir, args.seeds, groups))
    chart = write_chart(names, results, osp.join(args.out_dir, 'compare.png'))
    with open(osp.join(args.out_dir, 'compare.json'), 'w') as f:
        json.dump(dict(backbones=dict(zip(names, results)), data=args.data, seeds=args.seeds,
                       **({'groups': groups} if groups else {})), f, indent=2)
    print(f'wrote {osp.join(args.out_dir, "compare.md")}, compare.json and {chart}')


if __name__ == '__main__':
    main()
