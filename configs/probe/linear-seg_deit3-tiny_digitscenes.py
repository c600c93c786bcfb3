# Linear segmentation probe of the frozen demo backbone (configs/pretrain/cosub_deit3-tiny_digits.py) on
# digit_scenes: BatchNorm + 1x1 convolution on its four blocks' patch tokens, resized to the first one's grid and
# concatenated (DINOv2's "linear4"), 1,000 iterations at a batch of 8, AdamW lr 1e-3. What it reaches measures what
# the pretrained features already separate; nothing in the backbone is trained.
_base_ = ['../seg/upernet_cosub-deit3-tiny_digitscenes.py']
embed_dim = 128
model = dict(
    backbone=dict(frozen=True),
    neck=None,
    decode_head=dict(_delete_=True, type='LinearProbeHead', in_channels=[embed_dim] * 4, in_index=[0, 1, 2, 3],
                     dropout_ratio=0.0, num_classes=11, norm_cfg=dict(type='SyncBN', requires_grad=True),
                     align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None,
)
max_iters = 1000
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
