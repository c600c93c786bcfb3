r"""Segment an image, a folder of images (recursively) or a video with an exported segmentor.

MODEL is a model folder (config.json + model.safetensors [+ model.onnx]: `tools/convert_checkpoint.py segmentor`
writes it, `tools/convert_checkpoint.py onnx` adds the ONNX model), a model.onnx in such a folder, or an mmseg
<config>.pth with its <config>.py beside it. With model.onnx only onnxruntime, numpy and OpenCV are used (no torch,
mmcv, mmseg).

Writes OUT/labels/<relative path>.png: label files in ADE20k's convention (0 = unlabeled, class i stored as i + 1;
our datasets read them back with reduce_zero_label), and with --overlay OUT/overlays/<relative path>.png, the
picture with the class colours blended in. A video gives OUT/labels/<name>/frame_NNNNNN.png and, with --overlay,
OUT/overlays/<name>.mp4. An image that cannot be read is named on stderr and skipped; the others are written, then
the tool exits with status 1 naming every skipped file.

Examples:
    python tools/segment.py work_dirs/demo/export/segmentor data/digit_scenes/images/validation --out preds --overlay
    python tools/segment.py exported/upernet/model.onnx street.jpg --out preds --overlay --tta
    python tools/segment.py exported/upernet clip.mp4 --out preds --overlay --every 5
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from typing import Iterable, List, Optional, Tuple

import cv2
import numpy as np

from cosub_seg.cli import inference_tool
from cosub_seg.errors import DEBUG_HELP, DataError, MissingFileError, UserError
from cosub_seg.inference import Segmenter
from cosub_seg.inference.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ImageConversionWarning, list_images, \
    read_image, write_png


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='model folder, model.onnx, or mmseg <config>.pth (with <config>.py beside it)')
    parser.add_argument('input', help='an image, a folder of images (searched recursively) or a video file')
    parser.add_argument('--out', default=None, help='output folder (default: work_dirs/segment/<input name>)')
    parser.add_argument('--overlay', action='store_true', help='also write the pictures with the class colours')
    parser.add_argument('--tta', action='store_true', help="test-time augmentation (the model's scales / flips)")
    parser.add_argument('--mode', choices=('whole', 'slide'), help="inference mode (default: the model's)")
    parser.add_argument('--backend', choices=('auto', 'onnx', 'torch'), default='auto',
                        help='auto: model.onnx with ONNX Runtime when the folder has one, else PyTorch')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--batch-size', type=int, default=4, help='images (or frames) per forward')
    parser.add_argument('--every', type=int, default=1, help='video: segment every N-th frame')
    parser.add_argument('--alpha', type=float, default=0.5, help='overlay: weight of the class colours')
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    return parser.parse_args(argv)


def _track(items: list) -> Iterable:
    try:
        from cosub_seg.progress import track  # MMEngine's progress bar (throttled off a terminal)
    except ImportError:  # inference-only install: a plain counter on a terminal
        def track(items):
            for i, item in enumerate(items):
                if sys.stdout.isatty():
                    print(f'\r{i}/{len(items)}', end='', flush=True)
                yield item
            if sys.stdout.isatty():
                print(f'\r{len(items)}/{len(items)}', flush=True)
    return track(items)


def _read(path: str) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """The image, or None and why not; conversion warnings are printed naming the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', ImageConversionWarning)
        try:
            image = read_image(path)
        except (UserError, OSError) as err:
            return None, f'{type(err).__name__}: {err}'
    for w in caught:
        if issubclass(w.category, ImageConversionWarning):
            print(f'warning: {w.message}', file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return image, None


def _write(prediction, image: np.ndarray, rel: str, out: str, overlay: bool, alpha: float) -> None:
    stem = osp.splitext(rel)[0] + '.png'
    write_png(osp.join(out, 'labels', stem), prediction.label_png())
    if overlay:
        write_png(osp.join(out, 'overlays', stem), prediction.overlay(image, alpha), rgb=True)


def segment_images(segmenter: Segmenter, paths: List[str], root: Optional[str], args) -> dict:
    """Every image of ``paths`` (relative names from ``root``, or the file name), ``batch_size`` at a time; a file
    that cannot be read is reported and skipped."""
    failed, written = [], 0
    batch: List[Tuple[str, np.ndarray]] = []

    def flush():
        nonlocal written
        if not batch:
            return
        try:
            predictions = segmenter.predict([image for _, image in batch], mode=args.mode, tta=args.tta,
                                            batch_size=args.batch_size)
        except UserError:  # one image the model cannot take (a size): find it, keep the others
            predictions = []
            for path, image in batch:
                try:
                    predictions.append(segmenter.predict(image, mode=args.mode, tta=args.tta))
                except UserError as err:
                    print(f'skipped {path}: {err}', file=sys.stderr, flush=True)
                    failed.append((path, f'{type(err).__name__}: {err}'))
                    predictions.append(None)
        for (path, image), prediction in zip(batch, predictions):
            if prediction is not None:
                _write(prediction, image, rel_of(path), args.out, args.overlay, args.alpha)
                written += 1
        batch.clear()

    def rel_of(path: str) -> str:
        return osp.relpath(path, root) if root else osp.basename(path)

    for path in _track(paths):
        image, problem = _read(path)
        if image is None:
            print(f'skipped {path}: {problem}', file=sys.stderr, flush=True)
            failed.append((path, problem))
            continue
        batch.append((path, image))
        if len(batch) >= args.batch_size:
            flush()
    flush()
    return dict(written=written, failed=failed)


def segment_video(segmenter: Segmenter, path: str, args) -> dict:
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise DataError(f'{path} cannot be opened as a video (OpenCV reads no stream from it)')
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    name = osp.splitext(osp.basename(path))[0]
    writer, written, index = None, 0, -1
    video_out = osp.join(args.out, 'overlays', name + '.mp4')
    frames: List[Tuple[int, np.ndarray]] = []

    def flush():
        nonlocal writer, written
        if not frames:
            return
        predictions = segmenter.predict([f for _, f in frames], mode=args.mode, tta=args.tta,
                                        batch_size=args.batch_size)
        for (i, frame), prediction in zip(frames, predictions):
            write_png(osp.join(args.out, 'labels', name, f'frame_{i:06d}.png'), prediction.label_png())
            if args.overlay:
                picture = prediction.overlay(frame, args.alpha)
                if writer is None:
                    os.makedirs(osp.dirname(video_out), exist_ok=True)
                    writer = cv2.VideoWriter(video_out, cv2.VideoWriter_fourcc(*'mp4v'),
                                             fps / max(1, args.every), (frame.shape[1], frame.shape[0]))
                writer.write(np.ascontiguousarray(picture[:, :, ::-1]))
            written += 1
        frames.clear()

    def take(bgr) -> None:
        nonlocal index
        index += 1
        if index % args.every == 0:
            frames.append((index, np.ascontiguousarray(bgr[:, :, ::-1])))
            if len(frames) >= args.batch_size:
                flush()

    ok = True
    for _ in _track(list(range(total))):  # the container's frame count, for the progress bar
        ok, bgr = capture.read()
        if not ok:
            break
        take(bgr)
    while ok:  # frames beyond the count the container declares
        ok, bgr = capture.read()
        if ok:
            take(bgr)
    flush()
    capture.release()
    if writer is not None:
        writer.release()
    if written == 0:
        raise DataError(f'{path}: no frame could be read from the video')
    return dict(written=written, failed=[], video=video_out if args.overlay else None)


@inference_tool
def main(argv=None):
    args = parse_args(argv)
    if not osp.exists(args.input):
        raise MissingFileError(f'{args.input} does not exist: give an image, a folder of images or a video')
    if args.batch_size < 1 or args.every < 1:
        raise DataError('--batch-size and --every must be at least 1')
    name = osp.splitext(osp.basename(osp.normpath(args.input)))[0]
    args.out = args.out or osp.join('work_dirs', 'segment', name)
    segmenter = Segmenter.from_pretrained(args.model, device=args.device, backend=args.backend)
    kind = 'folder' if osp.isdir(args.input) else (
        'video' if args.input.lower().endswith(VIDEO_EXTENSIONS) else 'image')
    if kind == 'folder':
        paths = list_images(args.input)
        result = segment_images(segmenter, paths, args.input, args)
    elif kind == 'video':
        result = segment_video(segmenter, args.input, args)
    else:
        if not args.input.lower().endswith(IMAGE_EXTENSIONS):
            print(f'warning: {args.input} has no image extension ({", ".join(IMAGE_EXTENSIONS)}); reading it as '
                  'an image', file=sys.stderr)
        result = segment_images(segmenter, [args.input], None, args)
    result.update(out=args.out, backend=segmenter.backend.name, kind=kind)
    print(f'wrote {result["written"]} label file(s) to {osp.join(args.out, "labels")}'
          + (f' and overlays to {osp.join(args.out, "overlays")}' if args.overlay else '')
          + f' ({segmenter.backend.name} backend)', flush=True)
    if result['failed']:
        names = '; '.join(f'{path} ({problem})' for path, problem in result['failed'][:10])
        more = f' and {len(result["failed"]) - 10} more' if len(result['failed']) > 10 else ''
        raise DataError(f'{len(result["failed"])} of {len(result["failed"]) + result["written"]} images could not '
                        f'be read or segmented and were skipped (every other result was written): {names}{more}')
    return result


if __name__ == '__main__':
    main()
