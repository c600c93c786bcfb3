# cosub Swin-B + UperNet, ADE20k (150 classes), 512x512 crops, 160k iterations, batch 16.
# Backbone: the output of configs/pretrain/cosub_swin-base_in1k.py.
# mmseg's Swin-B (IN-1k) UperNet: 47.99 / 49.57 mIoU (single / multi-scale + flip).
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
        arch='swin_base_patch4_window7_224',
        img_size=512,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_swin-base_in1k/epoch_800.pth'),
    ),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512),
)
train_dataloader = dict(batch_size=2)  # x 8 GPUs
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
