# cosub ViT-B (DeiT III) + MultiLevelNeck + UperNet, COCO-Stuff-164k (171 classes), 512x512 crops, 80k iterations,
# batch 16 (4 GPUs x 4).
# Backbone: the output of configs/pretrain/cosub_deit3-base_in1k.py. Backbone, widths and optimiser as
# upernet_cosub-deit3-base_ade20k-512x512.py (tests/test_configs.py checks that they agree).
# Test: slide windows of 512 at a stride of 341, as the ADE20k recipes (the same test scale; mmseg's COCO-Stuff
# recipes, on CNNs, test the whole image).
# Reference: none found for ViT-B (DeiT III) + UperNet on COCO-Stuff-164k. For scale only (another backbone and
# head): mmseg's PSPNet R-50-D8 / R-101-D8, 512x512, 80k, 38.80 / 40.34 mIoU single scale
# (configs/pspnet/metafile.yaml).
_base_ = [
    '../_base_/models/upernet_vit_mln.py',
    '../_base_/datasets/coco_stuff164k_512x512.py',
    '../_base_/schedules/seg_adamw_80k.py',
    '../_base_/seg_runtime.py',
]
crop_size = (512, 512)
num_classes = 171
width = 768
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='deit3_base_patch16_224', img_size=crop_size, stochastic_depth=dict(rate=0.2),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_deit3-base_in1k/epoch_800.pth')),
    neck=dict(in_channels=[width] * 4, out_channels=width),
    decode_head=dict(in_channels=[width] * 4, num_classes=num_classes),
    auxiliary_head=dict(in_channels=width, num_classes=num_classes),
    test_cfg=dict(crop_size=crop_size, stride=(341, 341)),
)
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.01))  # mmseg's ViT recipe
