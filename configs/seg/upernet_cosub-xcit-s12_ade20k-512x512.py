# cosub XCiT-S12/16 + MultiLevelNeck + UperNet, ADE20k, 512x512, 160k iterations, batch 16 (8 GPUs x 2).
# Backbone: the output of configs/pretrain/cosub_xcit-s12_in1k.py. Reference (METHOD.md): mmseg's ViT-B + MLN from
# supervised weights, 47.71 / 49.51 mIoU single / multi-scale + flip (80k).
_base_ = [
    '../_base_/models/upernet_vit_mln.py',
    '../_base_/datasets/ade20k_8x2.py',
    '../_base_/schedules/seg_adamw_160k.py',
    '../_base_/seg_runtime.py',
]
width = 384
model = dict(
    backbone=dict(arch='xcit_small_12_p16_224', stochastic_depth=dict(rate=0.1),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_xcit-s12_in1k/epoch_800.pth')),
    neck=dict(in_channels=[width] * 4, out_channels=width),
    decode_head=dict(in_channels=[width] * 4),
    auxiliary_head=dict(in_channels=width),
)
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.01))  # mmseg's ViT recipe
