"""Fine-tune a segmentor (UperNet on a cosub-pretrained backbone) with MMSegmentation.

Examples:
    cosub-train-seg configs/seg/upernet_cosub-deit3-tiny_digitscenes.py   # or: python tools/train_seg.py ...
    cosub-train-seg configs/seg/upernet_cosub-convnext-base_ade20k-512x512.py --amp --tensorboard
    bash tools/dist_train_seg.sh configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py 8
"""
from cosub_seg.cli import tool
from cosub_seg.runtime.launch import run_training


@tool
def main(argv=None):
    run_training(argv, __doc__)


if __name__ == '__main__':
    main()
