"""The prediction picture, composed with numpy and cv2 so that its size follows from the image's (tested):

    +---------------------+---+---------------------+---+---------------------+---+---------------------+
    | <image name>        |   | ground truth        |   | prediction          |   | errors (red): ...   |  header
    +---------------------+   +---------------------+   +---------------------+   +---------------------+
    | the image           |gap| truth labels in the |gap| predicted labels in |gap| the image in dimmed |
    | (upscaled)          |   | palette's colours   |   | the palette's       |   | grey, wrong pixels  |  panels
    |                     |   |                     |   | colours             |   | red, ignored grey   |
    +---------------------+---+---------------------+---+---------------------+---+---------------------+
    | [#] background  [#] digit 0  [#] digit 1 ...  [#] ignored (not scored)  [#] wrong                   |  legend
    +---------------------------------------------------------------------------------------------------------+

Every panel is the image's size times the smallest integer ``factor`` that makes its short side at least
:data:`MIN_PANEL_SIDE` (128 -> 3 -> 384), each source pixel becoming a ``factor x factor`` block (nearest neighbour,
the same blocks in every panel). Pixels the metric ignores (``ignore_index``, 255 after ``reduce_zero_label``) are
:data:`IGNORED_COLOUR` in the truth and errors panels and never count as errors. No text is drawn over the
pictures: the titles are in the header strip, the class names in the legend (every class when there are at most
:data:`MAX_LEGEND_CLASSES`, else those in the truth or the prediction of this image).
"""
import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

MIN_PANEL_SIDE = 384
HEADER_HEIGHT = 28
GAP = 8  # white columns between panels
LEGEND_PAD = 8  # around the legend's rows
LEGEND_ROW_HEIGHT = 24
LEGEND_ENTRY_WIDTH = 176  # swatch, space, name
SWATCH = 16
MAX_LEGEND_CLASSES = 20
IGNORE_INDEX = 255
DIM = 0.5  # the errors panel's grey image is this bright
ERROR_COLOUR = (255, 0, 0)
IGNORED_COLOUR = (200, 200, 200)
WHITE = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX
TITLE_SCALE = 0.5
LEGEND_SCALE = 0.45
IGNORED_NAME = 'ignored (not scored)'
ERROR_NAME = 'wrong (errors panel)'


def scale_factor(height: int, width: int, min_side: int = MIN_PANEL_SIDE) -> int:
    """The smallest integer factor that makes the short side at least ``min_side`` (1 for large images)."""
    return max(1, math.ceil(min_side / min(height, width)))


def upscale(array: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel as a ``factor x factor`` block (nearest neighbour; label maps keep their labels)."""
    return array if factor == 1 else np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def default_palette(num_classes: int) -> List[Tuple[int, int, int]]:
    """Fixed random colours, for a dataset that names no palette."""
    rng = np.random.RandomState(42)
    return [tuple(int(v) for v in rng.randint(0, 256, size=3)) for _ in range(num_classes)]


def colour_labels(labels: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = IGNORE_INDEX
                  ) -> np.ndarray:
    """``labels`` (H x W) painted with ``palette`` (class k: ``palette[k]``); ``ignore_index`` in
    :data:`IGNORED_COLOUR`. A label that is neither a class nor ignored is an error."""
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    labels = np.asarray(labels)
    ignored = labels == ignore_index
    unknown = ~ignored & ((labels < 0) | (labels >= len(colours)))
    if unknown.any():
        raise ValueError(f'labels {sorted(set(np.unique(labels[unknown]).tolist()))} are neither one of the '
                         f'{len(colours)} classes nor the ignored label {ignore_index}')
    out = np.empty(labels.shape + (3, ), np.uint8)
    out[ignored] = IGNORED_COLOUR
    out[~ignored] = colours[labels[~ignored]]
    return out


def error_mask(truth: np.ndarray, prediction: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The pixels the metric counts as wrong: labelled (not ``ignore_index``) and predicted as another class."""
    return (np.asarray(prediction) != np.asarray(truth)) & (np.asarray(truth) != ignore_index)


def errors_panel(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray,
                 ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The image in grey at :data:`DIM` brightness, wrong pixels in :data:`ERROR_COLOUR`, ignored ones in
    :data:`IGNORED_COLOUR`."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    out = np.repeat(np.round(grey * DIM).astype(np.uint8)[..., None], 3, axis=2)
    out[np.asarray(truth) == ignore_index] = IGNORED_COLOUR
    out[error_mask(truth, prediction, ignore_index)] = ERROR_COLOUR
    return out


def errors_title(truth: np.ndarray, prediction: np.ndarray, ignore_index: int = IGNORE_INDEX) -> str:
    labelled = int((np.asarray(truth) != ignore_index).sum())
    if labelled == 0:
        return 'errors: no labelled pixel'
    wrong = int(error_mask(truth, prediction, ignore_index).sum())
    return f'errors (red): {100 * wrong / labelled:.1f} % wrong, pixel acc. {100 - 100 * wrong / labelled:.1f} %'


def legend_entries(classes: Sequence[str], palette: Sequence[Sequence[int]], truth: Optional[np.ndarray] = None,
                   prediction: Optional[np.ndarray] = None, ignore_index: int = IGNORE_INDEX,
                   max_classes: int = MAX_LEGEND_CLASSES) -> List[Tuple[str, Tuple[int, int, int]]]:
    """(name, colour) of every class when there are at most ``max_classes``, else of the classes in ``truth`` or
    ``prediction``, in class order; then the ignored colour (when there is a truth) and the error colour (when
    there is a truth and a prediction)."""
    if len(classes) <= max_classes:
        shown = range(len(classes))
    else:
        present = set()
        for labels in (truth, prediction):
            if labels is not None:
                present |= set(np.unique(labels).tolist())
        shown = sorted(k for k in present if 0 <= k < len(classes))
    entries = [(classes[k], tuple(int(v) for v in palette[k])) for k in shown]
    if truth is not None:
        entries.append((IGNORED_NAME, IGNORED_COLOUR))
        if prediction is not None:
            entries.append((ERROR_NAME, ERROR_COLOUR))
    return entries


def legend_columns(width: int) -> int:
    return max(1, (width - 2 * LEGEND_PAD) // LEGEND_ENTRY_WIDTH)


def legend_height(num_entries: int, width: int) -> int:
    """Rows of :data:`LEGEND_ROW_HEIGHT` with :data:`LEGEND_PAD` above and below; 0 without entries."""
    if num_entries == 0:
        return 0
    return 2 * LEGEND_PAD + math.ceil(num_entries / legend_columns(width)) * LEGEND_ROW_HEIGHT


def swatch_origin(index: int, width: int) -> Tuple[int, int]:
    """(x, y) of entry ``index``'s swatch in the legend strip: row by row, :func:`legend_columns` a row."""
    row, column = divmod(index, legend_columns(width))
    return (LEGEND_PAD + column * LEGEND_ENTRY_WIDTH,
            LEGEND_PAD + row * LEGEND_ROW_HEIGHT + (LEGEND_ROW_HEIGHT - SWATCH) // 2)


def draw_legend(entries: Sequence[Tuple[str, Sequence[int]]], width: int) -> np.ndarray:
    """The legend strip: a :data:`SWATCH`-pixel square of each colour and its name, on white."""
    strip = np.full((legend_height(len(entries), width), width, 3), WHITE, np.uint8)
    for index, (name, colour) in enumerate(entries):
        x, y = swatch_origin(index, width)
        strip[y:y + SWATCH, x:x + SWATCH] = colour
        cv2.rectangle(strip, (x, y), (x + SWATCH - 1, y + SWATCH - 1), (96, 96, 96), 1)  # white swatches show
        text = _fit(name, LEGEND_ENTRY_WIDTH - SWATCH - 12, LEGEND_SCALE)
        cv2.putText(strip, text, (x + SWATCH + 6, y + SWATCH - 3), FONT, LEGEND_SCALE, TEXT_COLOUR, 1, cv2.LINE_AA)
    return strip


def _fit(text: str, width: int, scale: float) -> str:
    """``text``, cut with '..' until it is at most ``width`` pixels wide."""
    if cv2.getTextSize(text, FONT, scale, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + '..', FONT, scale, 1)[0][0] > width:
        text = text[:-1]
    return text + '..'


def compose_prediction_picture(image: np.ndarray, classes: Sequence[str],
                               palette: Optional[Sequence[Sequence[int]]] = None,
                               truth: Optional[np.ndarray] = None, prediction: Optional[np.ndarray] = None,
                               name: Optional[str] = None, ignore_index: int = IGNORE_INDEX,
                               min_side: int = MIN_PANEL_SIDE) -> np.ndarray:
    """The picture of the module docstring, RGB uint8: image | ground truth | prediction | errors, each panel the
    image's size times :func:`scale_factor`, with :data:`GAP` white columns between panels, a header of
    :data:`HEADER_HEIGHT` pixels above and the legend (:func:`legend_height`) below. Without ``truth`` the truth
    and errors panels are left out, without ``prediction`` the prediction and errors panels."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    height, width = image.shape[:2]
    for what, labels in (('ground truth', truth), ('prediction', prediction)):
        if labels is not None and np.shape(labels) != (height, width):
            raise ValueError(f'the {what} is {np.shape(labels)}, the image {(height, width)}: they must match')
    palette = palette if palette is not None else default_palette(len(classes))
    panels: List[Tuple[str, np.ndarray]] = [(name or 'image', image)]
    if truth is not None:
        panels.append(('ground truth', colour_labels(truth, palette, ignore_index)))
    if prediction is not None:
        panels.append(('prediction', colour_labels(prediction, palette, ignore_index)))
    if truth is not None and prediction is not None:
        panels.append((errors_title(truth, prediction, ignore_index),
                       errors_panel(image, truth, prediction, ignore_index)))
    factor = scale_factor(height, width, min_side)
    panel_h, panel_w = height * factor, width * factor
    total_w = len(panels) * panel_w + (len(panels) - 1) * GAP
    entries = legend_entries(classes, palette, truth, prediction, ignore_index) if (
        truth is not None or prediction is not None) else []
    picture = np.full((HEADER_HEIGHT + panel_h + legend_height(len(entries), total_w), total_w, 3), WHITE,
                      np.uint8)
    for index, (title, panel) in enumerate(panels):
        x = index * (panel_w + GAP)
        picture[HEADER_HEIGHT:HEADER_HEIGHT + panel_h, x:x + panel_w] = upscale(panel, factor)
        text = _fit(title, panel_w - 8, TITLE_SCALE)
        (_, text_h), _ = cv2.getTextSize(text, FONT, TITLE_SCALE, 1)
        cv2.putText(picture, text, (x + 4, (HEADER_HEIGHT + text_h) // 2), FONT, TITLE_SCALE, TEXT_COLOUR, 1,
                    cv2.LINE_AA)
    if entries:
        picture[HEADER_HEIGHT + panel_h:] = draw_legend(entries, total_w)
    return picture


__all__ = ['compose_prediction_picture', 'scale_factor', 'upscale', 'colour_labels', 'error_mask', 'errors_panel',
           'errors_title', 'legend_entries', 'legend_height', 'legend_columns', 'swatch_origin', 'draw_legend',
           'default_palette']
