r"""Parameters, FLOPs and throughput of the backbone and the whole model of a pretraining or segmentation config.

Examples:
    python tools/analyze_model.py configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py
    python tools/analyze_model.py configs/pretrain/cosub_deit3-small_in1k.py --shape 224
    python tools/analyze_model.py configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py --throughput \
        --device cuda --batch-size 16 --amp

The code is cosub_seg/cli/analyze_model.py (installed as the console script ``cosub-analyze-model``).
"""
from cosub_seg.cli.analyze_model import main

if __name__ == '__main__':
    main()
