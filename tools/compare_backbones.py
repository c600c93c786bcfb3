r"""Frozen-backbone probes (kNN, linear, optionally linear segmentation) of several checkpoints, side by side.

Examples:
    python tools/compare_backbones.py work_dirs/k2/epoch_15.pth work_dirs/k1/epoch_15.pth --names cosub plain \
        --data data/digits --out-dir work_dirs/compare

The code is cosub_seg/cli/compare_backbones.py (installed as the console script ``cosub-compare-backbones``).
"""
from cosub_seg.cli.compare_backbones import main

if __name__ == '__main__':
    main()
