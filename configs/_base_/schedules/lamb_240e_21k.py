# DeiT III's ImageNet-21k pretraining schedule (README_revenge.md: --opt fusedlamb --lr 0.001 --weight-decay 0.02
# --epochs 240 --warmup-epochs 5 --warmup-lr 1e-6 --sched cosine, min-lr 1e-5 by default) at a total batch of 2048
# (16 GPUs x 128); they note 4096 works with lr 1.5e-3. No weight decay on norms, biases, position embeddings.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Lamb', lr=1e-3, weight_decay=0.02),
    constructor='NoDecayOptimWrapperConstructor',
    clip_grad=None,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=240, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=240, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=2048, enable=False)
