# DeiT III's ImageNet-21k -> 1k fine-tuning schedule (README_revenge.md "finetuning on ImageNet-1k": --opt fusedlamb
# --lr 0.0003 --weight-decay 0.02 --epochs 50 --warmup-epochs 5 --warmup-lr 1e-6 --sched cosine, min-lr 1e-5) at a
# total batch of 2048 (S: 16 GPUs x 128; B, L, H: 32 GPUs x 64), not rescaled (--unscale-lr).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Lamb', lr=3e-4, weight_decay=0.02),
    constructor='NoDecayOptimWrapperConstructor',
    paramwise_cfg=dict(),
    clip_grad=None,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 3e-4, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=50, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=2048, enable=False)
