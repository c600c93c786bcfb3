r"""Segment an image, a folder of images (recursively) or a video with an exported segmentor: label PNGs in ADE20k's
convention and, with --overlay, the pictures with the class colours.

Examples:
    python tools/segment.py work_dirs/demo/export/segmentor data/digit_scenes/images/validation --out preds --overlay
    python tools/segment.py exported/upernet/model.onnx street.jpg --out preds --overlay --tta

The code is cosub_seg/cli/segment.py (installed as the console script ``cosub-segment``).
"""
from cosub_seg.cli.segment import main

if __name__ == '__main__':
    main()
