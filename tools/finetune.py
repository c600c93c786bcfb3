"""Fine-tune a classifier from a checkpoint (higher resolution, ImageNet-21k -> 1k, transfer datasets).

Examples:
    python tools/finetune.py configs/finetune/deit3-tiny_digits-48.py --checkpoint work_dirs/demo/pretrain/epoch_15.pth
    python tools/finetune.py configs/finetune/deit3-base_in1k-384.py --checkpoint PATH --amp
    bash tools/dist_finetune.sh configs/finetune/deit3-base_in1k-384.py 8 --checkpoint PATH

The code is cosub_seg/cli/finetune.py (installed as the console script ``cosub-finetune``).
"""
from cosub_seg.cli.finetune import main

if __name__ == '__main__':
    main()
