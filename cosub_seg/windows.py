"""The windows of mmseg's slide inference, in plain Python: shared by the batched slide inference of the models
(:mod:`cosub_seg.models.slide`, torch) and the ONNX path of :mod:`cosub_seg.inference` (numpy, no torch)."""
from typing import List, Sequence, Tuple

Window = Tuple[int, int, int, int]  # y1, y2, x1, x2


def slide_windows(height: int, width: int, crop: Sequence[int], stride: Sequence[int]) -> List[Window]:
    """The windows mmseg's slide inference visits, in its order (the last row/column is shifted to end at the
    border; a crop larger than the image is clipped to it)."""
    (h_crop, w_crop), (h_stride, w_stride) = crop, stride
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2 = min(h_idx * h_stride + h_crop, height)
            x2 = min(w_idx * w_stride + w_crop, width)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


__all__ = ['Window', 'slide_windows']
