"""Training curves from MMEngine's ``scalars.json``: loss terms, learning rate and validation metrics over
iterations."""
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import DataError, MissingFileError

# Validation metrics worth a curve, in the order they are drawn (per-class IoUs have their own chart).
HEADLINE_METRICS = ('accuracy/top1', 'accuracy/top5', 'mIoU', 'mAcc', 'aAcc')


def read_scalars(work_dir: str) -> List[dict]:
    """Every record of ``<work_dir>/<timestamp>/vis_data/scalars.json`` (MMEngine's LocalVisBackend), oldest run
    first, so a resumed run continues its curves."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise MissingFileError(f'no <timestamp>/vis_data/scalars.json under {work_dir}: is it the work dir of a '
                               'training run (with LocalVisBackend in the visualizer)?')
    records = []
    for path in files:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise DataError(f'{path}, line {number}: not JSON ({err})') from None
    return records


def split_records(records: Sequence[dict]) -> Tuple[List[dict], List[dict]]:
    """Training records (they carry a loss or a learning rate) and validation records, each validation record
    given the training iteration it was taken at as ``iter``.

    MMEngine writes the validation of an epoch-based run at ``step`` = epoch; it is placed at the last iteration
    logged in that epoch. Iteration-based runs already write ``step`` = iteration.
    """
    train, evaluations = [], []
    for r in records:
        if 'lr' in r or any('loss' in k for k in r):
            train.append(r)
        elif any(k in r for k in HEADLINE_METRICS):
            evaluations.append(r)
    last_iter_of_epoch: Dict[int, int] = {}
    for r in train:
        if 'epoch' in r:
            last_iter_of_epoch[r['epoch']] = max(r['iter'], last_iter_of_epoch.get(r['epoch'], 0))
    val = [dict(r, iter=last_iter_of_epoch.get(r['step'], r['step']) if last_iter_of_epoch else r['step'])
           for r in evaluations]
    return train, val


def plot_training_curves(records: Sequence[dict], out_file: str, title: Optional[str] = None,
                         figsize: Tuple[float, float] = (15, 4), dpi: int = 100) -> str:
    """Three panels over training iterations: every loss term, the learning rate, and the validation metrics
    (top-1 / top-5 or mIoU / mAcc / aAcc), one marker per evaluation (an epoch-based run's at the last iteration of
    its epoch, an iteration-based run's at its iteration) and the last value of each written next to it. Writes a
    PNG of ``figsize * dpi`` pixels and returns its path."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    train, val = split_records(records)
    if not train:
        raise DataError(f'no training records (loss or lr) to draw for {out_file}')
    fig, (ax_loss, ax_lr, ax_val) = plt.subplots(1, 3, figsize=figsize, dpi=dpi)
    loss_keys = sorted({k for r in train for k in r if 'loss' in k and isinstance(r[k], (int, float))})
    for key in loss_keys:
        points = [(r['iter'], r[key]) for r in train if key in r]
        ax_loss.plot(*zip(*points), label=key, linewidth=1.2)
    ax_loss.set(title='training losses', xlabel='iteration')
    ax_loss.legend(fontsize='small')
    lr = [(r['iter'], r['lr']) for r in train if 'lr' in r]
    if lr:
        ax_lr.plot(*zip(*lr), color='tab:green')
    ax_lr.set(title='learning rate', xlabel='iteration')
    ax_lr.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
    for key in HEADLINE_METRICS:
        points = [(r['iter'], r[key]) for r in val if key in r]
        if points:
            [line] = ax_val.plot(*zip(*points), marker='o', markersize=5, linewidth=1.5, label=key)
            # The last value written next to its point, in the line's colour.
            ax_val.annotate(f'{points[-1][1]:.1f}', points[-1], xytext=(4, 4), textcoords='offset points',
                            color=line.get_color(), fontsize='small', fontweight='bold')
    ax_val.set(title=f'validation ({len(val)} evaluations)' if val else 'validation', xlabel='iteration',
               ylabel='%')
    if val:
        # Room for the annotation of the last point, and an axis that starts at the run's start.
        ax_val.set_xlim(left=0, right=max(r['iter'] for r in [*train, *val]) * 1.08)
        ax_val.margins(y=0.1)
    if val:
        ax_val.legend(fontsize='small')
    else:
        ax_val.text(0.5, 0.5, 'no validation logged', ha='center', va='center', transform=ax_val.transAxes)
    for ax in (ax_loss, ax_lr, ax_val):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_file, dpi=dpi)
    plt.close(fig)
    return out_file
