# cosub ViT-L (DeiT III) fine-tuned at 224 after pretraining at 192 (configs/pretrain/cosub_deit3-large_in1k.py):
# DeiT III's ViT-L command at 224 (README_revenge.md: AdamW 1e-5 at batch 512 = 8 GPUs x 64, wd 0.1, 20 epochs,
# drop-path 0.45). Published: cosub 87.5 top-1, DeiT III alone 84.9 (their log: 84.86 after 20 epochs).
_base_ = [
    '../_base_/models/finetune_classifier.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/adamw_finetune_20e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    arch='deit3_large_patch16_224',
    stochastic_depth=dict(rate=0.45, schedule='constant'),
    model_kwargs=dict(img_size=224),
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-large_in1k/epoch_800.pth'),
)
