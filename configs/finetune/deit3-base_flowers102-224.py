# cosub ViT-B (DeiT III, configs/pretrain/cosub_deit3-base_in1k.py) fine-tuned on Flowers 102 at 224: the dataset's
# official release (configs/_base_/datasets/flowers102.py; check: tools/prepare_data.py flowers102), our transfer
# recipe (configs/_base_/schedules/adamw_transfer.py: AdamW 1e-4 at batch 512, 300 epochs, drop-path 0.1, mixup 0.8 /
# cutmix 1.0, label smoothing 0.1, RandAugment). The classifier is replaced by a 102-class one.
#   python tools/finetune.py configs/finetune/deit3-base_flowers102-224.py --checkpoint PATH
_base_ = [
    '../_base_/models/finetune_classifier.py',
    '../_base_/datasets/flowers102.py',
    '../_base_/schedules/adamw_transfer.py',
    '../_base_/default_runtime.py',
]
num_classes = 102
model = dict(
    arch='deit3_base_patch16_224',
    num_classes=num_classes,
    stochastic_depth=dict(rate=0.1, schedule='constant'),
    model_kwargs=dict(img_size=224),
    data_preprocessor=dict(num_classes=num_classes),
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-base_in1k/epoch_800.pth'),
)
max_epochs = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
