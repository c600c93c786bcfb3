# cosub ViT-S (DeiT III) pretrained on ImageNet-21k: DeiT III's 21k recipe (README_revenge.md: LAMB 1e-3 at batch
# 2048, wd 0.02, 240 epochs, no mixup, cutmix 1.0, label smoothing 0.1, simple random crop + 3-Augment at 224,
# drop-path 0.05 as METHOD.md lists for ViT-S), with submodel co-training (k = 2). Then fine-tune on ImageNet-1k:
#   python tools/finetune.py configs/finetune/deit3-small_in21k-to-in1k-224.py \
#       --checkpoint work_dirs/cosub_deit3-small_in21k/epoch_240.pth
# Published after that fine-tuning: DeiT III ViT-S (21k) 83.1 top-1 at 224 (METHOD.md).
_base_ = [
    '../_base_/models/cosub_classifier_21k.py',
    '../_base_/datasets/imagenet21k_3aug_src.py',
    '../_base_/schedules/lamb_240e_21k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    arch='deit3_small_patch16_224',
    stochastic_depth=dict(rate=0.05, schedule='constant'),
    model_kwargs=dict(img_size=224),
)
train_dataloader = dict(batch_size=128)  # x 16 GPUs = 2048
