# DeiT III schedule: LAMB, weight decay 0.05 (none on norms, biases, position embeddings, class tokens),
# 5 warm-up epochs, cosine to 1e-5, 800 epochs. Learning rates are for a total batch of 2048.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Lamb', lr=3e-3, weight_decay=0.05),
    constructor='NoDecayOptimWrapperConstructor',
    clip_grad=None,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=800, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=800, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=2048, enable=False)
