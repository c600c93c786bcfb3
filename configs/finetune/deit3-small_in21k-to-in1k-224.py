# cosub ViT-S (DeiT III) pretrained on ImageNet-21k (configs/pretrain/cosub_deit3-small_in21k.py), fine-tuned on
# ImageNet-1k at 224: DeiT III's 21k -> 1k command (README_revenge.md "finetuning on ImageNet-1k": LAMB 3e-4 at batch
# 2048 = 16 GPUs x 128, wd 0.02, 50 epochs, cutmix 1.0, no mixup, label smoothing 0.1, simple random crop +
# 3-Augment, drop-path 0.05). The 21k classifier is replaced by a 1,000-class one. Published: DeiT III ViT-S 83.1
# top-1 (METHOD.md).
_base_ = [
    '../_base_/models/finetune_classifier.py',
    '../_base_/datasets/imagenet_3aug_src.py',
    '../_base_/schedules/lamb_finetune_50e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    arch='deit3_small_patch16_224',
    stochastic_depth=dict(rate=0.05, schedule='constant'),
    model_kwargs=dict(img_size=224),
    data_preprocessor=dict(mixup=dict(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)),
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-small_in21k/epoch_240.pth'),
)
train_dataloader = dict(batch_size=128)  # x 16 GPUs = 2048
