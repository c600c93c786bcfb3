# CIFAR-10 for transfer fine-tuning. Layout: the python-pickle release cifar-10-python.tar.gz
# (https://www.cs.toronto.edu/~kriz/cifar.html) unpacked in data/cifar10, so data/cifar10/cifar-10-batches-py/ holds
# data_batch_1..5 (50,000 training images), test_batch (10,000) and batches.meta (data/README.md). The images come
# out of the pickles (BGR, as OpenCV loads), so neither pipeline has LoadImageFromFile; the 32x32 images are
# upsampled to 224 as DeiT does for transfer (its RandomResizedCrop / Resize to 224 on the 32x32 images).
_base_ = ['./transfer_224.py']
dataset_type = 'CIFAR10Dataset'
data_root = 'data/cifar10'
official_classes = 10  # the official count; the dataset refuses another (metainfo['classes'])
# The images come out of the pickles: neither pipeline has LoadImageFromFile.
train_pipeline = _base_.train_pipeline[1:]
test_pipeline = _base_.test_pipeline[1:]
train_dataloader = dict(num_workers=4, dataset=dict(dataset=dict(
    type=dataset_type, data_root=data_root, split='train', num_classes=official_classes, pipeline=train_pipeline)))
val_dataloader = dict(num_workers=4, dataset=dict(
    type=dataset_type, data_root=data_root, split='test', num_classes=official_classes, pipeline=test_pipeline))
test_dataloader = val_dataloader
