from .metrics import Accuracy
from .seg_metrics import ConfusionMatrixMetric, PerClassIoUMetric, confusion_matrix

__all__ = ['Accuracy', 'ConfusionMatrixMetric', 'PerClassIoUMetric', 'confusion_matrix']
