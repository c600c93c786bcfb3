"""Pictures of a run: training curves, per-class IoU, the confusion matrix and prediction overlays.

The plots are drawn with matplotlib's Agg backend (no display needed) from files the run wrote: MMEngine's
``scalars.json`` and the test metrics. The overlays use mmseg's visualiser (:class:`SideBySideSegVisualizer`).
"""
from .charts import plot_confusion_matrix, plot_per_class_iou
from .curves import plot_training_curves, read_scalars
from .seg_visualizer import SideBySideSegVisualizer, draw_predictions

__all__ = ['plot_confusion_matrix', 'plot_per_class_iou', 'plot_training_curves', 'read_scalars',
           'SideBySideSegVisualizer', 'draw_predictions']
