# What the classification transfer sets share (not a config of its own: cifar10.py, cifar100.py, flowers102.py,
# stanford_cars.py, inat2018.py and inat2019.py inherit it and name their dataset and splits).
# Recipe (DeiT, Touvron et al. 2021, "Transfer learning: performance on downstream tasks"; DeiT III): fine-tune at 224,
# random-resized crop (bicubic), flip, timm's RandAugment rand-m9-mstd0.5-inc1 (DeiT's --aa), no random erasing
# (DeiT III's --reprob 0.0); test: short side resized to 224, centre crop 224 (DeiT III's --eval-crop-ratio 1.0).
img_size = 224  # a recipe at another resolution sets the pipeline entries that use it
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='RandomResizedCrop', size=img_size, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TimmRandAugment', policy='rand-m9-mstd0.5-inc1', img_size=img_size),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='ResizeShortSide', size=img_size, interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(
    batch_size=64,  # per GPU; the fine-tuning schedule sets the learning rate for the global batch
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    # Each draw carries its own augmentation seed (exact resume); the set is checked before training.
    sampler=dict(type='ReproducibleSampler', sampler=dict(type='DefaultSampler', shuffle=True)),
    dataset=dict(type='CheckedDataset', on_bad_sample='raise', dataset=dict(pipeline=train_pipeline)),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
