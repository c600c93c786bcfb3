# cosub ConvNeXt-B + UperNet, ADE20k, 512x512, 160k iterations, batch 16 (8 GPUs x 2).
# Backbone: the output of configs/pretrain/cosub_convnext-base_in1k.py.
# Reference: mmseg's ConvNeXt-B, 48.71 / 49.54 mIoU (single / multi-scale + flip).
_base_ = [
    '../_base_/models/upernet_timm.py',
    '../_base_/datasets/ade20k_8x2.py',
    '../_base_/schedules/seg_adamw_160k.py',
    '../_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(arch='convnext_base', stochastic_depth=dict(rate=0.4),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_convnext-base_in1k/epoch_800.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512),
)
