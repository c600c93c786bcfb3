# cosub ConvNeXt-B + UperNet, Pascal Context 59 (59 classes), 480x480 crops, 80k iterations, batch 16 (4 GPUs x 4).
# Backbone: the output of configs/pretrain/cosub_convnext-base_in1k.py. Backbone, widths and optimiser as
# upernet_cosub-convnext-base_ade20k-512x512.py (tests/test_configs.py checks that they agree).
# Test: slide windows of 480 at a stride of 320, as mmseg's Pascal Context 59 recipes.
# Reference: none found for ConvNeXt-B + UperNet on Pascal Context 59. For scale only (another backbone and head):
# mmseg's PSPNet R-101-D8, 480x480, 80k, 52.47 / 53.99 mIoU single / multi-scale + flip
# (configs/pspnet/metafile.yaml).
_base_ = [
    '../_base_/models/upernet_timm.py',
    '../_base_/datasets/pascal_context59_480x480.py',
    '../_base_/schedules/seg_adamw_80k.py',
    '../_base_/seg_runtime.py',
]
crop_size = (480, 480)
num_classes = 59
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='convnext_base', stochastic_depth=dict(rate=0.4),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_convnext-base_in1k/epoch_800.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=num_classes),
    auxiliary_head=dict(in_channels=512, num_classes=num_classes),
    test_cfg=dict(crop_size=crop_size, stride=(320, 320)),
)
