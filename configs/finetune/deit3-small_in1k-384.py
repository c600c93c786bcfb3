# cosub ViT-S (DeiT III) fine-tuned at 384 after pretraining at 224 (configs/pretrain/cosub_deit3-small_in1k.py):
# DeiT III's ViT-S command at 384 (README_revenge.md: AdamW 1e-5 at batch 512 = 8 GPUs x 64, wd 0.1, 20 epochs,
# drop-path 0.0). Their log: 83.42 top-1 after 20 epochs. Drop-path 0 means no co-training here (cosub needs a
# rate > 0: model.num_submodels=2 model.stochastic_depth.rate=0.05).
# ViT-S has no 224 fine-tuning config: DeiT III pretrains ViT-S at 224 already, and publishes no 224 fine-tuning of it.
_base_ = [
    '../_base_/models/finetune_classifier.py',
    '../_base_/datasets/imagenet_finetune_384.py',
    '../_base_/schedules/adamw_finetune_20e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    arch='deit3_small_patch16_224',
    stochastic_depth=dict(rate=0.0, schedule='constant'),
    model_kwargs=dict(img_size=384),
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-small_in1k/epoch_800.pth'),
)
