# cosub RegNetY-16GF + UperNet, ADE20k, 512x512, 160k iterations, batch 16 (8 GPUs x 2).
# Backbone: the output of configs/pretrain/cosub_regnety-16gf_in1k.py. No published UperNet number.
_base_ = [
    '../_base_/models/upernet_timm.py',
    '../_base_/datasets/ade20k_8x2.py',
    '../_base_/schedules/seg_adamw_160k.py',
    '../_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(arch='regnety_160', stochastic_depth=dict(rate=0.2),
                  init_cfg=dict(type='Pretrained', checkpoint='work_dirs/cosub_regnety-16gf_in1k/epoch_800.pth')),
    decode_head=dict(in_channels=[224, 448, 1232, 3024]),
    auxiliary_head=dict(in_channels=1232),
)
