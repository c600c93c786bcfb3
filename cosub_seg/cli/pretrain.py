"""Pretrain a timm backbone on an ImageNet-style dataset with submodel co-training (cosub).

Examples:
    cosub-pretrain configs/pretrain/cosub_deit3-tiny_digits.py          # or: python tools/pretrain.py ...
    cosub-pretrain configs/pretrain/cosub_deit3-small_in1k.py --amp --cfg-options model.num_submodels=1
    bash tools/dist_pretrain.sh configs/pretrain/cosub_deit3-base_in1k.py 8
"""
from cosub_seg.cli import tool
from cosub_seg.runtime.launch import run_training


@tool
def main(argv=None):
    run_training(argv, __doc__)


if __name__ == '__main__':
    main()
