"""Pictures of a run: training curves, per-class IoU, the confusion matrix and prediction pictures.

The plots are drawn with matplotlib's Agg backend (no display needed) from files the run wrote: MMEngine's
``scalars.json`` and the test metrics. The prediction pictures (image | ground truth | prediction | errors, with a
colour legend) are composed with numpy and cv2 at sizes that follow from the image's (:mod:`.overlays`), for
``tools/pipeline.py`` (:func:`draw_predictions`) and mmseg's ``--show-dir`` (:class:`SideBySideSegVisualizer`).
"""
from .charts import plot_confusion_matrix, plot_per_class_iou
from .curves import plot_training_curves, read_scalars
from .overlays import compose_prediction_picture
from .seg_visualizer import SideBySideSegVisualizer, draw_predictions

__all__ = ['plot_confusion_matrix', 'plot_per_class_iou', 'plot_training_curves', 'read_scalars',
           'compose_prediction_picture', 'SideBySideSegVisualizer', 'draw_predictions']
