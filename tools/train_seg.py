"""Fine-tune a segmentor (UperNet on a cosub-pretrained backbone) with MMSegmentation.

Examples:
    python tools/train_seg.py configs/seg/upernet_cosub-deit3-tiny_digitscenes.py
    python tools/train_seg.py configs/seg/upernet_cosub-convnext-base_ade20k-512x512.py --amp --tensorboard
    bash tools/dist_train_seg.sh configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py 8

The code is cosub_seg/cli/train_seg.py (installed as the console script ``cosub-train-seg``).
"""
from cosub_seg.cli.train_seg import main

if __name__ == '__main__':
    main()
