# ImageNet-21k (winter21 release, 19,167 synsets, unpacked: data/imagenet21k/<wnid>/*.JPEG; see data/README.md and
# cosub_seg/datasets/imagenet21k.py) with DeiT III's 21k augmentation (imagenet_3aug_src.py). The release has no
# validation split: 10 images of every synset are held out (the same ones everywhere) and validated on.
# fall11 (21,841 synsets): set model.num_classes, model.data_preprocessor.num_classes and the datasets' num_classes
# (the datasets refuse a folder whose synset count differs);
# ImageNet-21k-P (train/val folders): data_prefix='imagenet21k_train' / 'imagenet21k_val' and val_per_class=0.
_base_ = ['./imagenet_3aug_src.py']
num_synsets = 19167  # winter21
data_root = 'data/imagenet21k'
train_pipeline = _base_.train_pipeline
test_pipeline = _base_.test_pipeline
train_dataloader = dict(
    dataset=dict(dataset=dict(_delete_=True, type='ImageNet21kDataset', data_root=data_root, data_prefix='',
                              split='train', val_per_class=10, num_classes=num_synsets, pipeline=train_pipeline)),
)
val_dataloader = dict(
    dataset=dict(_delete_=True, type='ImageNet21kDataset', data_root=data_root, data_prefix='', split='val',
                 val_per_class=10, num_classes=num_synsets, pipeline=test_pipeline, test_mode=True),
)
test_dataloader = val_dataloader
