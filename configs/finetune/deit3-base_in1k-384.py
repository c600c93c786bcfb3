# cosub ViT-B (DeiT III) fine-tuned at 384 (configs/pretrain/cosub_deit3-base_in1k.py):
# DeiT III's ViT-B command at 384 (README_revenge.md: AdamW 1e-5 at batch 512 = 16 GPUs x 32, wd 0.1, 20 epochs,
# drop-path 0.15). Their log: 85.08 top-1 after 20 epochs.
_base_ = [
    '../_base_/models/finetune_classifier.py',
    '../_base_/datasets/imagenet_finetune_384.py',
    '../_base_/schedules/adamw_finetune_20e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    arch='deit3_base_patch16_224',
    stochastic_depth=dict(rate=0.15, schedule='constant'),
    model_kwargs=dict(img_size=384),
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-base_in1k/epoch_800.pth'),
)
train_dataloader = dict(batch_size=32)  # x 16 GPUs = 512
