"""Per-class IoU bar chart and confusion matrix of a segmentation test."""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def per_class_iou_figsize(num_classes: int) -> Tuple[float, float]:
    """8 inches wide, a quarter of an inch per class high (at least 3)."""
    return 8.0, max(3.0, 0.25 * num_classes + 1.0)


def plot_per_class_iou(per_class_iou: Dict[str, float], out_file: str, title: str = 'per-class IoU',
                       figsize: Optional[Tuple[float, float]] = None, dpi: int = 100) -> str:
    """Horizontal bars, one per class in the given order, with the mean as a dashed line. Classes with no pixel in
    the ground truth nor the predictions (IoU NaN) are drawn as 'n/a'. Writes a PNG of ``figsize * dpi`` pixels."""
    plt = _pyplot()
    names = list(per_class_iou)
    values = np.array([per_class_iou[n] for n in names], dtype=np.float64)
    fig, ax = plt.subplots(figsize=figsize or per_class_iou_figsize(len(names)), dpi=dpi)
    positions = np.arange(len(names))
    ax.barh(positions, np.nan_to_num(values), color='tab:blue')
    for y, value in zip(positions, values):
        ax.text(min(np.nan_to_num(value), 100) + 1, y, 'n/a' if np.isnan(value) else f'{value:.1f}', va='center',
                fontsize='small')
    if np.any(~np.isnan(values)):
        ax.axvline(np.nanmean(values), color='tab:red', linestyle='--', label=f'mean {np.nanmean(values):.2f}')
        ax.legend(loc='lower right', fontsize='small')
    ax.set_yticks(positions, names, fontsize='small' if len(names) <= 40 else 4)
    ax.invert_yaxis()
    ax.set(xlim=(0, 110), xlabel='IoU (%)', title=title)
    ax.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_file, dpi=dpi)
    plt.close(fig)
    return out_file


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], out_file: str,
                          title: str = 'confusion matrix (% of each true class)',
                          figsize: Optional[Tuple[float, float]] = None, dpi: int = 100) -> str:
    """Rows are true classes, columns predictions; each row is normalised to 100 % (a class's recall lies on the
    diagonal). Cells show their percentage when there are at most 20 classes. Writes a PNG of ``figsize * dpi``
    pixels (default 9 x 8 inches)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f'a confusion matrix of {len(classes)} classes must be {len(classes)}x{len(classes)}, '
                         f'got {matrix.shape}')
    plt = _pyplot()
    totals = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(matrix * 100, totals, out=np.zeros_like(matrix), where=totals > 0)
    fig, ax = plt.subplots(figsize=figsize or (9, 8), dpi=dpi)
    image = ax.imshow(percent, cmap='Blues', vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    n = len(classes)
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=90, fontsize='small')
        ax.set_yticks(range(n), classes, fontsize='small')
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if totals[i, 0] > 0:
                    ax.text(j, i, f'{percent[i, j]:.0f}', ha='center', va='center', fontsize=7,
                            color='white' if percent[i, j] > 50 else 'black')
    ax.set(xlabel='prediction', ylabel='ground truth', title=title)
    fig.tight_layout()
    fig.savefig(out_file, dpi=dpi)
    plt.close(fig)
    return out_file
