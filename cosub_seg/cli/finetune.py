"""Fine-tune a classifier from a checkpoint: at a higher resolution, on ImageNet-1k after ImageNet-21k, or on a
transfer dataset (CIFAR, Flowers-102, Stanford Cars, iNaturalist).

Position embeddings are resampled (bicubic) to the config's resolution, the classifier is replaced when the class
count differs, and the recipe is the config's (configs/finetune/: DeiT III's AdamW 1e-5 fine-tuning, the 21k -> 1k
LAMB fine-tuning, the transfer recipes). Cosub during fine-tuning: --cfg-options model.num_submodels=2.

Examples:
    cosub-finetune configs/finetune/deit3-base_in1k-384.py --checkpoint work_dirs/cosub_deit3-base_in1k/epoch_800.pth
    python tools/finetune.py configs/finetune/deit3-tiny_digits-48.py --checkpoint work_dirs/demo/pretrain/epoch_15.pth
    bash tools/dist_finetune.sh configs/finetune/deit3-base_in21k-to-in1k-448.py 8 --checkpoint PATH
"""
from cosub_seg.cli import tool
from cosub_seg.runtime.launch import run_training


@tool
def main(argv=None):
    run_training(argv, __doc__, finetune=True)


if __name__ == '__main__':
    main()
