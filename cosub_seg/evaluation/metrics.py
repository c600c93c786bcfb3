"""Top-k classification accuracy."""
from typing import Dict, Sequence

import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent, reported as ``top1``, ``top5``, ... (k larger than the class count counts all).

    Args:
        topk: the k values.
        collect_device, prefix: as in :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            score = sample['pred_score'].float().cpu()
            label = int(sample['gt_label'].view(-1)[0])
            ranked = score.argsort(descending=True)
            self.results.append([bool((ranked[:k] == label).any()) for k in self.topk])

    def compute_metrics(self, results: list) -> Dict[str, float]:
        hits = torch.tensor(results, dtype=torch.float64)
        return {f'top{k}': float(hits[:, i].mean() * 100) for i, k in enumerate(self.topk)}
