# ImageNet-1k with DeiT III's fine-tuning augmentation (README_revenge.md: --aa rand-m9-mstd0.5-inc1 --reprob 0.0
# --no-repeated-aug --eval-crop-ratio 1.0): random-resized crop, flip, timm's RandAugment (which turns colour jitter
# off in timm's create_transform), no random erasing, no repeated augmentation; test at crop ratio 1.0.
# The crop size is step 1 of both pipelines and RandAugment's translations follow it: a recipe at another
# resolution sets img_size and the three entries below (see imagenet_finetune_384.py).
_base_ = ['./imagenet_3aug.py']
img_size = 224
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='RandomResizedCrop', size=img_size, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TimmRandAugment', policy='rand-m9-mstd0.5-inc1', img_size=img_size),
    dict(type='PackClsInputs'),
]
test_pipeline = _base_.test_pipeline
train_dataloader = dict(
    batch_size=64,  # per GPU; DeiT III's learning rate 1e-5 is for 512 in all (8 GPUs), not rescaled (--unscale-lr)
    sampler=dict(type='ReproducibleSampler', sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True)),
    dataset=dict(dataset=dict(pipeline=train_pipeline)),
)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
