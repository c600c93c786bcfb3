from .metrics import Accuracy
from .seg_metrics import PerClassIoUMetric

__all__ = ['Accuracy', 'PerClassIoUMetric']
