# CIFAR-100 (the 100 fine labels) for transfer fine-tuning. Layout: the python-pickle release cifar-100-python.tar.gz
# (https://www.cs.toronto.edu/~kriz/cifar.html) unpacked in data/cifar100, so data/cifar100/cifar-100-python/ holds
# train (50,000 images), test (10,000) and meta (data/README.md). The images come out of the pickles (BGR, as OpenCV
# loads), so neither pipeline has LoadImageFromFile; the 32x32 images are upsampled to 224 as DeiT does for transfer.
_base_ = ['./transfer_224.py']
dataset_type = 'CIFAR100Dataset'
data_root = 'data/cifar100'
official_classes = 100  # the official count; the dataset refuses another (metainfo['classes'])
# The images come out of the pickles: neither pipeline has LoadImageFromFile.
train_pipeline = _base_.train_pipeline[1:]
test_pipeline = _base_.test_pipeline[1:]
train_dataloader = dict(num_workers=4, dataset=dict(dataset=dict(
    type=dataset_type, data_root=data_root, split='train', num_classes=official_classes, pipeline=train_pipeline)))
val_dataloader = dict(num_workers=4, dataset=dict(
    type=dataset_type, data_root=data_root, split='test', num_classes=official_classes, pipeline=test_pipeline))
test_dataloader = val_dataloader
