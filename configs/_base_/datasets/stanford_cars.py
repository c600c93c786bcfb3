# Stanford Cars for transfer fine-tuning. Layout: the devkit release in data/stanford_cars: cars_train/, cars_test/,
# devkit/ (cars_train.tgz, cars_test.tgz, car_devkit.tgz unpacked) and cars_test_annos_withlabels.mat (at the root or
# in devkit/) (data/README.md). 8,144 training and 8,041 test images of 196 classes, whole images (no box crop); the
# validation loader is the test split.
# Recipe (DeiT, Touvron et al. 2021, "Transfer learning: performance on downstream tasks"; DeiT III): fine-tune at 224,
# random-resized crop (bicubic), flip, timm's RandAugment rand-m9-mstd0.5-inc1 (DeiT's --aa), no random erasing
# (DeiT III's --reprob 0.0); test: short side resized to 224, centre crop 224 (DeiT III's --eval-crop-ratio 1.0).
dataset_type = 'StanfordCarsDataset'
data_root = 'data/stanford_cars'
img_size = 224  # a recipe at another resolution sets it and the four pipeline entries that use it
official_classes = 196  # the official count; the dataset refuses another (metainfo['classes'])

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
    dataset=dict(type='CheckedDataset', on_bad_sample='raise',
                 dataset=dict(type=dataset_type, data_root=data_root, split='train', num_classes=official_classes,
                              pipeline=train_pipeline)),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', num_classes=official_classes,
                 pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
