"""Evaluate a segmentor checkpoint: prints aAcc / mIoU / mAcc and the per-class IoU table, with a progress bar.

Examples:
    python tools/test_seg.py configs/seg/upernet_cosub-deit3-tiny_digitscenes.py CHECKPOINT
    python tools/test_seg.py CONFIG CHECKPOINT --tta --out results/ --show-dir vis/ --confusion-matrix
    bash tools/dist_test_seg.sh CONFIG CHECKPOINT 8 --tta

The code is cosub_seg/cli/test_seg.py (installed as the console script ``cosub-test-seg``).
"""
from cosub_seg.cli.test_seg import main

if __name__ == '__main__':
    main()
