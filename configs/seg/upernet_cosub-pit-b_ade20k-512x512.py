# cosub PiT-B + UperNet, ADE20k (150 classes), 512x512 crops, 160k iterations, batch 16.
# Backbone: the output of configs/pretrain/cosub_pit-b_in1k.py.
# PiT has three stages (strides 8/16/32): UPerHead takes three maps.
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
        arch='pit_b_224',
        img_size=512,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_pit-b_in1k/epoch_800.pth'),
    ),
    decode_head=dict(in_channels=[256, 512, 1024], in_index=[0, 1, 2]),
    auxiliary_head=dict(in_channels=512, in_index=1),
)
train_dataloader = dict(batch_size=2)  # x 8 GPUs
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
