# ImageNet-1k with DeiT III's "simple random crop" (--src) and 3-Augment, no repeated augmentation: the augmentation
# of their ImageNet-21k pretraining and of the 21k -> 1k fine-tuning (README_revenge.md: --ThreeAugment --src
# --color-jitter 0.3 --no-repeated-aug; deit augment.py: resize the short side, reflect-pad 4, random crop, flip).
# The crop size is in steps 1-2 of the training pipeline and 1-2 of the test pipeline; see imagenet_3aug_src_448.py.
_base_ = ['./imagenet_3aug.py']
img_size = 224
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='ResizeShortSide', size=img_size, interpolation='bicubic'),
    dict(type='RandomCrop', size=img_size, padding=4, padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomGrayscale', prob=1.0, keep_channels=True)],
        [dict(type='Solarize', thr=128)],
        [dict(type='GaussianBlur', sigma=(0.1, 2.0))],
    ]),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackClsInputs'),
]
test_pipeline = _base_.test_pipeline
train_dataloader = dict(
    sampler=dict(type='ReproducibleSampler', sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True)),
    dataset=dict(dataset=dict(pipeline=train_pipeline)),
)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
