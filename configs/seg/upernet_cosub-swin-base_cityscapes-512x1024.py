# cosub Swin-B + UperNet, Cityscapes (19 classes), 512x1024 crops, 80k iterations, batch 8 (4 GPUs x 2).
# Backbone: the output of configs/pretrain/cosub_swin-base_in1k.py. Backbone, widths and optimiser as
# upernet_cosub-swin-base_ade20k-512x512.py (tests/test_configs.py checks that they agree).
# Test: slide windows of the crop at a stride of 2/3 of it (mmseg's 769x769 Cityscapes recipes: 513 of 769) over the
# 2048x1024 image.
# Reference: none found for Swin-B + UperNet on Cityscapes. For scale only (another backbone): mmseg's UperNet R-50,
# 512x1024, 80k, 78.19 / 79.19 mIoU single / multi-scale + flip (configs/upernet/metafile.yaml).
_base_ = [
    '../_base_/models/upernet_timm.py',
    '../_base_/datasets/cityscapes_512x1024.py',
    '../_base_/schedules/seg_adamw_80k.py',
    '../_base_/seg_runtime.py',
]
crop_size = (512, 1024)
num_classes = 19
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='swin_base_patch4_window7_224', img_size=crop_size, stochastic_depth=dict(rate=0.3),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_swin-base_in1k/epoch_800.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=num_classes),
    auxiliary_head=dict(in_channels=512, num_classes=num_classes),
    test_cfg=dict(crop_size=crop_size, stride=(341, 683)),
)
