# cosub ViT-B (DeiT III) fine-tuned at 224 after pretraining at 192 (configs/pretrain/cosub_deit3-base_in1k.py):
# DeiT III's fine-tuning command for ViT-B at 224 (README_revenge.md: AdamW 1e-5 at batch 512 = 8 GPUs x 64, wd 0.1,
# 20 epochs, drop-path 0.2, RandAugment, label smoothing 0.1, mixup 0.8 / cutmix 1.0). Published: cosub 86.3 top-1,
# DeiT III alone 83.8 (their log of this step: 83.45 after epoch 0, 83.80 after 20).
#   python tools/finetune.py configs/finetune/deit3-base_in1k-224.py --checkpoint PATH  (8 GPUs: dist_finetune.sh)
_base_ = [
    '../_base_/models/finetune_classifier.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/adamw_finetune_20e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    arch='deit3_base_patch16_224',
    stochastic_depth=dict(rate=0.2, schedule='constant'),
    model_kwargs=dict(img_size=224),
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-base_in1k/epoch_800.pth'),
)
