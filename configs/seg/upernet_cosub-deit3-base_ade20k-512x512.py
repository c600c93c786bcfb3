# cosub ViT-B (DeiT III) + MultiLevelNeck + UperNet, ADE20k (150 classes), 512x512 crops, 160k iterations, batch 16.
# Backbone: the output of configs/pretrain/cosub_deit3-base_in1k.py.
# mmseg's ViT-B + MLN recipe reaches 47.71 / 49.51 mIoU
# (single / multi-scale + flip, 80k) from supervised ImageNet weights (METHOD.md).
_base_ = [
    '../_base_/models/upernet_timm.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/schedules/seg_adamw_160k.py',
    '../_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmSegBackbone',
        arch='deit3_base_patch16_224',
        img_size=512,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-base_in1k/epoch_800.pth'),
    ),
    neck=dict(type='MultiLevelNeck', in_channels=[768] * 4, out_channels=768, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768] * 4),
    auxiliary_head=dict(in_channels=768),
)
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_cfg = dict(max_iters=160000, val_interval=8000)
train_dataloader = dict(batch_size=2)  # x 8 GPUs
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
