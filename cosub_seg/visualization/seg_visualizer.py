"""Prediction pictures of a segmentor: image | ground truth | prediction | errors with a colour legend
(:func:`~cosub_seg.visualization.overlays.compose_prediction_picture`), for ``tools/pipeline.py`` and, through mmseg's
``SegVisualizationHook``, for ``--show-dir``."""
import os
import os.path as osp
from typing import List, Optional

import mmcv
import numpy as np
import torch
from mmseg.registry import VISUALIZERS as SEG_VISUALIZERS
from mmseg.visualization import SegLocalVisualizer

from ..errors import DataError
from .overlays import IGNORE_INDEX, compose_prediction_picture


def _labels(data_sample, key: str) -> Optional[np.ndarray]:
    if data_sample is None or key not in data_sample:
        return None
    return data_sample.get(key).data[0].cpu().numpy()


@SEG_VISUALIZERS.register_module()
class SideBySideSegVisualizer(SegLocalVisualizer):
    """mmseg's ``SegLocalVisualizer`` drawing :func:`compose_prediction_picture`: image | ground truth | prediction |
    errors, upscaled to at least 384 pixels a side, titles above and a colour legend with the class names below.
    Configs select it with ``visualizer=dict(type='SideBySideSegVisualizer')`` (our seg runtime does), and then
    mmseg's ``SegVisualizationHook`` (``tools/test_seg.py --show-dir``, mmseg's ``tools/test.py --show-dir``) draws
    this way. ``with_labels`` is accepted for mmseg's signature and unused: class names are in the legend, never over
    regions. Depth maps are not drawn."""

    def add_datasample(self, name: str, image: np.ndarray, data_sample=None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: Optional[str] = None, step: int = 0, with_labels: Optional[bool] = True) -> None:
        classes = self.dataset_meta.get('classes')
        truth = _labels(data_sample, 'gt_sem_seg') if draw_gt else None
        prediction = _labels(data_sample, 'pred_sem_seg') if draw_pred else None
        if classes is None and (truth is not None or prediction is not None):
            raise ValueError('the visualiser has no class names: call set_dataset_meta(classes, palette) '
                             'or give the dataset metainfo')
        img_path = data_sample.get('img_path') if data_sample is not None else None
        drawn = compose_prediction_picture(image, classes or [], self.dataset_meta.get('palette'), truth, prediction,
                                           name=osp.basename(img_path) if img_path else name,
                                           ignore_index=self.dataset_meta.get('ignore_index', IGNORE_INDEX))
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)


def spread_indices(length: int, num_images: int) -> List[int]:
    """``num_images`` indices spread evenly over ``range(length)``, first and last included: the images
    :func:`draw_predictions` draws (``tools/pipeline.py`` segments the same ones with the ONNX model)."""
    return [int(i) for i in np.unique(np.linspace(0, length - 1, min(num_images, length)).round().astype(int))]


def draw_predictions(model, dataset, out_dir: str, num_images: int = 4) -> List[str]:
    """Runs ``model`` (an mmseg segmentor, e.g. from ``mmseg.apis.init_model``) on ``num_images`` images spread
    evenly over ``dataset`` (built with the config's test pipeline) and writes ``out_dir/<image name>.png``, each
    :func:`compose_prediction_picture` of the image, its ground truth and the prediction. Returns the paths."""
    if len(dataset) == 0:
        raise DataError('the dataset is empty: no prediction to draw')
    meta = getattr(model, 'dataset_meta', None) or dataset.metainfo
    ignore_index = getattr(dataset, 'ignore_index', IGNORE_INDEX)
    os.makedirs(out_dir, exist_ok=True)
    indices = spread_indices(len(dataset), num_images)
    paths = []
    model.eval()
    for index in indices:
        data = dataset[int(index)]
        with torch.no_grad():
            sample = model.test_step(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]))[0]
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        drawn = compose_prediction_picture(image, meta['classes'], meta.get('palette'), _labels(sample, 'gt_sem_seg'),
                                           _labels(sample, 'pred_sem_seg'), name=osp.basename(sample.img_path),
                                           ignore_index=ignore_index)
        path = osp.join(out_dir, osp.splitext(osp.basename(sample.img_path))[0] + '.png')
        mmcv.imwrite(mmcv.rgb2bgr(drawn), path)
        paths.append(path)
    return paths
