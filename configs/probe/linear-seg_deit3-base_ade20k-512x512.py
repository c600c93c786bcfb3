# Linear segmentation probe of a frozen cosub ViT-B (DeiT III) on ADE20k, DINOv2's linear protocol: the backbone
# frozen (no gradient, eval mode, no stochastic depth), BatchNorm + 1x1 convolution on its last block
# ("linear"; for "linear4" use the four blocks: in_index=[0, 1, 2, 3], in_channels=[768] * 4), 512x512 crops,
# 40k iterations at a batch of 16 (8 GPUs x 2), AdamW lr 1e-3, weight decay 1e-4, poly after 1,500 warm-up
# iterations. Backbone: the output of configs/pretrain/cosub_deit3-base_in1k.py.
_base_ = ['../seg/upernet_cosub-deit3-base_ade20k-512x512.py']
width = 768
model = dict(
    backbone=dict(frozen=True),
    neck=None,
    decode_head=dict(_delete_=True, type='LinearProbeHead', in_channels=[width], in_index=[3], dropout_ratio=0.0,
                     num_classes=150, norm_cfg=dict(type='SyncBN', requires_grad=True), align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None,
)
max_iters = 40000
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
