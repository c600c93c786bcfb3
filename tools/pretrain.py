"""Pretrain a timm backbone on an ImageNet-style dataset with submodel co-training (cosub).

Examples:
    python tools/pretrain.py configs/pretrain/cosub_deit3-tiny_digits.py
    python tools/pretrain.py configs/pretrain/cosub_deit3-small_in1k.py --amp --cfg-options model.num_submodels=1
    bash tools/dist_pretrain.sh configs/pretrain/cosub_deit3-base_in1k.py 8

The code is cosub_seg/cli/pretrain.py (installed as the console script ``cosub-pretrain``).
"""
from cosub_seg.cli.pretrain import main

if __name__ == '__main__':
    main()
