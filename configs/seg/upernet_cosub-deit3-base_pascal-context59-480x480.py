# cosub ViT-B (DeiT III) + MultiLevelNeck + UperNet, Pascal Context 59 (59 classes), 480x480 crops, 80k iterations,
# batch 16 (4 GPUs x 4).
# Backbone: the output of configs/pretrain/cosub_deit3-base_in1k.py. Backbone, widths and optimiser as
# upernet_cosub-deit3-base_ade20k-512x512.py (tests/test_configs.py checks that they agree).
# Test: slide windows of 480 at a stride of 320, as mmseg's Pascal Context 59 recipes.
# Reference: none found for ViT-B (DeiT III) + UperNet on Pascal Context 59. For scale only (another backbone and
# head): mmseg's PSPNet R-101-D8, 480x480, 80k, 52.47 / 53.99 mIoU single / multi-scale + flip
# (configs/pspnet/metafile.yaml).
_base_ = [
    '../_base_/models/upernet_vit_mln.py',
    '../_base_/datasets/pascal_context59_480x480.py',
    '../_base_/schedules/seg_adamw_80k.py',
    '../_base_/seg_runtime.py',
]
crop_size = (480, 480)
num_classes = 59
width = 768
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='deit3_base_patch16_224', img_size=crop_size, stochastic_depth=dict(rate=0.2),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-base_in1k/epoch_800.pth')),
    neck=dict(in_channels=[width] * 4, out_channels=width),
    decode_head=dict(in_channels=[width] * 4, num_classes=num_classes),
    auxiliary_head=dict(in_channels=width, num_classes=num_classes),
    test_cfg=dict(crop_size=crop_size, stride=(320, 320)),
)
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.01))  # mmseg's ViT recipe
