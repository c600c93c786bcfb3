# Transfer fine-tuning to a smaller classification set (CIFAR, Flowers-102, Stanford Cars, iNaturalist). Neither the
# cosub nor the DeiT III code publishes these hyper-parameters (their code only reads CIFAR-100 and iNat), so this is
# our choice: DeiT III's ImageNet fine-tuning recipe (AdamW, weight decay 0.1 except norms / biases / embeddings,
# 5 warm-up epochs, cosine; adamw_finetune_20e.py) with a 10x larger rate, 1e-4 at a total batch of 512, for the new
# classifier and the shift of domain, down to 1e-6. The recipes set max_epochs per dataset.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1),
    constructor='NoDecayOptimWrapperConstructor',
    paramwise_cfg=dict(),
    clip_grad=None,
)
max_epochs = 100
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=512, enable=False)
