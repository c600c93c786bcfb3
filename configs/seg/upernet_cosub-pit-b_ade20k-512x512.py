# cosub PiT-B + UperNet, ADE20k, 512x512, 160k iterations, batch 16 (8 GPUs x 2).
# Backbone: the output of configs/pretrain/cosub_pit-b_in1k.py. PiT has three stages (strides 8/16/32).
_base_ = [
    '../_base_/models/upernet_timm.py',
    '../_base_/datasets/ade20k_8x2.py',
    '../_base_/schedules/seg_adamw_160k.py',
    '../_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(arch='pit_b_224', img_size=512, stochastic_depth=dict(rate=0.2),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_pit-b_in1k/epoch_800.pth')),
    decode_head=dict(in_channels=[256, 512, 1024], in_index=[0, 1, 2]),
    auxiliary_head=dict(in_channels=512, in_index=1),
)
