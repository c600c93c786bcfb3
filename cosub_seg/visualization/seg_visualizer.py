"""Prediction overlays: image | ground truth | prediction, with mmseg's visualiser."""
import os
import os.path as osp
from typing import List, Optional

import mmcv
import numpy as np
import torch
from mmseg.registry import VISUALIZERS as SEG_VISUALIZERS
from mmseg.visualization import SegLocalVisualizer

from ..errors import DataError


@SEG_VISUALIZERS.register_module()
class SideBySideSegVisualizer(SegLocalVisualizer):
    """mmseg's ``SegLocalVisualizer`` that puts the plain image before the ground truth and prediction overlays,
    so the three read left to right: image | ground truth | prediction. Configs select it with
    ``visualizer=dict(type='SideBySideSegVisualizer')`` (our seg runtime does), and then mmseg's
    ``SegVisualizationHook`` (``tools/test_seg.py --show-dir``, mmseg's ``tools/test.py --show-dir``) draws this
    way. Depth maps are not drawn."""

    def add_datasample(self, name: str, image: np.ndarray, data_sample=None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: Optional[str] = None, step: int = 0, with_labels: Optional[bool] = True) -> None:
        classes = self.dataset_meta.get('classes')
        palette = self.dataset_meta.get('palette')
        panels = [image]
        for wanted, key in ((draw_gt, 'gt_sem_seg'), (draw_pred, 'pred_sem_seg')):
            if wanted and data_sample is not None and key in data_sample:
                if classes is None:
                    raise ValueError('the visualiser has no class names: call set_dataset_meta(classes, palette) '
                                     'or give the dataset metainfo')
                panels.append(self._draw_sem_seg(image, data_sample.get(key), classes, palette, with_labels))
        drawn = np.concatenate(panels, axis=1)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)


def draw_predictions(model, dataset, out_dir: str, num_images: int = 4, with_labels: bool = False) -> List[str]:
    """Runs ``model`` (an mmseg segmentor, e.g. from ``mmseg.apis.init_model``) on ``num_images`` images spread
    evenly over ``dataset`` (built with the config's test pipeline) and writes ``out_dir/<image name>.png``, each
    image | ground truth | prediction at the image's size (3 W x H pixels). Returns the paths."""
    if len(dataset) == 0:
        raise DataError('the dataset is empty: no prediction to draw')
    meta = getattr(model, 'dataset_meta', None) or dataset.metainfo
    visualizer = SideBySideSegVisualizer(name=f'overlays_{id(model)}', alpha=0.6)
    visualizer.set_dataset_meta(classes=meta['classes'], palette=meta['palette'])
    os.makedirs(out_dir, exist_ok=True)
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(num_images, len(dataset))).round().astype(int))
    paths = []
    model.eval()
    for index in indices:
        data = dataset[int(index)]
        with torch.no_grad():
            sample = model.test_step(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]))[0]
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        path = osp.join(out_dir, osp.splitext(osp.basename(sample.img_path))[0] + '.png')
        visualizer.add_datasample(osp.basename(path), image, sample, out_file=path, with_labels=with_labels)
        paths.append(path)
    return paths
