"""Sliding-window inference that runs the crops of an image in batches (plain PyTorch).

mmseg's ``EncoderDecoder.slide_inference`` runs one forward per window and accumulates each window's logits by
padding them to the full image (``preds += F.pad(...)``, a full-size tensor per window). On a GPU the one-window
forwards leave the device idle between small launches. :func:`slide_inference` visits the same windows in the same
order, runs them ``chunk`` at a time, and adds each window's logits into its region in place; the accumulation order
is mmseg's, so the sums are the same and the logits differ from mmseg's only by what batching changes inside the
network (float rounding).

How many windows to batch depends on the device, the model and the crop: on a GPU, as many as memory allows; on a
CPU, large batches can be slower (memory traffic). :class:`ChunkTuner` picks the chunk itself while doing real
work: the first images run with candidate chunk sizes (1, mmseg's, among them), the time per crop of each is
recorded, and from then on the fastest is used. A chunk that runs out of GPU memory is halved and not tried again.
"""
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..errors import ConfigError
from ..windows import slide_windows


def slide_inference(inputs: torch.Tensor,
                    predict: Callable[[torch.Tensor], torch.Tensor],
                    num_classes: int,
                    crop_size: Sequence[int],
                    stride: Sequence[int],
                    chunk: int) -> torch.Tensor:
    """Averaged logits of overlapping windows, ``chunk`` windows per forward.

    Args:
        inputs: (N, C, H, W) images.
        predict: maps a (k * N, C, h, w) batch of crops (window-major: all N images of a window, then the next
            window) to (k * N, num_classes, h, w) logits at crop resolution.
        num_classes: channels of the logits.
        crop_size, stride: (h, w) of the window and of the step.
        chunk: windows per forward (>= 1).
    """
    if chunk < 1:
        raise ConfigError(f'chunk must be >= 1, got {chunk}')
    n, _, height, width = inputs.shape
    windows = slide_windows(height, width, crop_size, stride)
    preds = inputs.new_zeros((n, num_classes, height, width))
    count = inputs.new_zeros((n, 1, height, width))
    for start in range(0, len(windows), chunk):
        group = windows[start:start + chunk]
        crops = torch.cat([inputs[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in group]) if len(group) > 1 else \
            inputs[:, :, group[0][0]:group[0][1], group[0][2]:group[0][3]]
        logits = predict(crops)
        for i, (y1, y2, x1, x2) in enumerate(group):
            preds[:, :, y1:y2, x1:x2] += logits[i * n:(i + 1) * n]
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


class ChunkTuner:
    """Chooses the number of windows per forward by timing real inference calls.

    Until every candidate (capped by the window counts seen) has ``trials`` measurements, each call uses the
    least-measured candidate; afterwards the one with the lowest median seconds per crop. Candidate 1 is mmseg's
    behaviour, so the choice is never slower than it, within measurement noise. Timing synchronises CUDA.

    Args:
        candidates: chunk sizes to try.
        trials: measurements per candidate before choosing.
    """

    def __init__(self, candidates: Sequence[int] = (1, 2, 4, 8, 16, 32), trials: int = 2):
        self.candidates = sorted(set(int(c) for c in candidates))
        self.trials = trials
        self.seconds_per_crop: Dict[int, List[float]] = {}
        self.failed: set = set()
        self.max_windows = 0
        self.choice: Optional[int] = None

    def _open(self) -> List[int]:
        usable = [c for c in self.candidates if c <= max(self.max_windows, 1) and c not in self.failed]
        return [c for c in usable if len(self.seconds_per_crop.get(c, ())) < self.trials]

    def next_chunk(self, num_windows: int) -> int:
        self.max_windows = max(self.max_windows, num_windows)
        if self.choice is not None:
            return min(self.choice, num_windows)
        candidates = [c for c in self._open() if c <= num_windows]
        if not candidates:  # this image cannot test an open candidate: use the best so far
            return min(self._best() or 1, num_windows)
        return min(candidates, key=lambda c: len(self.seconds_per_crop.get(c, ())))

    def record(self, chunk: int, seconds: float, crops: int) -> None:
        if self.choice is not None:
            return
        self.seconds_per_crop.setdefault(chunk, []).append(seconds / crops)
        if not self._open():
            self.choice = self._best()

    def mark_failed(self, chunk: int) -> None:
        self.failed.add(chunk)
        self.candidates = [c for c in self.candidates if c < chunk] or [1]
        if self.choice is not None and self.choice >= chunk:
            self.choice = max(self.candidates)

    def _best(self) -> Optional[int]:
        measured = {c: statistics.median(v) for c, v in self.seconds_per_crop.items() if c not in self.failed}
        return min(measured, key=measured.get) if measured else None


def tuned_slide_inference(tuner: ChunkTuner, inputs: torch.Tensor, predict: Callable[[torch.Tensor], torch.Tensor],
                          num_classes: int, crop_size: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """:func:`slide_inference` with the chunk from ``tuner``, timing the call for it; a chunk that runs out of
    CUDA memory is halved and the call retried."""
    num_windows = len(slide_windows(inputs.shape[2], inputs.shape[3], crop_size, stride))
    while True:
        chunk = tuner.next_chunk(num_windows)
        if inputs.is_cuda:
            torch.cuda.synchronize(inputs.device)
        start = time.perf_counter()
        try:
            logits = slide_inference(inputs, predict, num_classes, crop_size, stride, chunk)
        except torch.cuda.OutOfMemoryError:
            if chunk == 1:
                raise
            torch.cuda.empty_cache()
            tuner.mark_failed(chunk)
            continue
        if inputs.is_cuda:
            torch.cuda.synchronize(inputs.device)
        tuner.record(min(chunk, num_windows), time.perf_counter() - start, num_windows * inputs.shape[0])
        return logits


__all__ = ['slide_windows', 'slide_inference', 'ChunkTuner', 'tuned_slide_inference']
