"""mmseg's IoU metric, also returning every class's IoU (for reports and logs)."""
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS as SEG_METRICS


@SEG_METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """:class:`mmseg.evaluation.IoUMetric` (it still logs its per-class table) that also returns each class's IoU
    in percent as ``IoU.<class name>``, next to aAcc / mIoU / mAcc."""

    def compute_metrics(self, results: list) -> dict:
        summary = super().compute_metrics(results)
        areas = [sum(result[i] for result in results) for i in range(4)]
        per_class = self.total_area_to_metrics(*areas, ['mIoU'], self.nan_to_num, self.beta)
        for name, iou in zip(self.dataset_meta['classes'], per_class['IoU']):
            summary[f'IoU.{name}'] = round(float(iou) * 100, 2)
        return summary
