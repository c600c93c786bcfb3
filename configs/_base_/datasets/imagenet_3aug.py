# ImageNet-1k with the DeiT III recipe: random-resized crop, flip, 3-Augment, colour jitter 0.3, repeated
# augmentation; test crop ratio 1.0. Layout: data/imagenet/{train,val}/<wnid>/*.JPEG (see data/README.md).
# The crop size is step 1 of both pipelines; a recipe at another resolution sets it there.
dataset_type = 'ImageFolderDataset'
data_root = 'data/imagenet'

train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='RandomResizedCrop', size=224, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomGrayscale', prob=1.0, keep_channels=True)],
        [dict(type='Solarize', thr=128)],
        [dict(type='GaussianBlur', sigma=(0.1, 2.0))],
    ]),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='ResizeShortSide', size=224, interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackClsInputs'),
]

train_dataloader = dict(
    batch_size=64,  # per GPU; the recipes' learning rates are for 2048 in all (32 GPUs)
    num_workers=10,
    persistent_workers=True,
    drop_last=True,
    # Each draw carries its own augmentation seed (exact resume); the set is checked before training, and a bad
    # image stops training with its path (on_bad_sample='skip' skips and counts them instead).
    sampler=dict(type='ReproducibleSampler', sampler=dict(type='RepeatAugSampler', shuffle=True, num_repeats=3)),
    dataset=dict(type='CheckedDataset', on_bad_sample='raise',
                 dataset=dict(type=dataset_type, data_root=data_root, data_prefix='train', pipeline=train_pipeline)),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix='val', pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
