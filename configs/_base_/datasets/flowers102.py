# Oxford Flowers-102 for transfer fine-tuning. Layout: the release files of
# https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ in data/flowers102: jpg/ (102flowers.tgz unpacked),
# imagelabels.mat, setid.mat (data/README.md). Trained on train + val (2,040 images), evaluated on test (6,149), the
# usual transfer protocol; the validation loader is the test split.
_base_ = ['./transfer_224.py']
dataset_type = 'Flowers102Dataset'
data_root = 'data/flowers102'
official_classes = 102  # the official count; the dataset refuses another (metainfo['classes'])
train_dataloader = dict(dataset=dict(dataset=dict(
    type=dataset_type, data_root=data_root, split='trainval', num_classes=official_classes)))
val_dataloader = dict(dataset=dict(
    type=dataset_type, data_root=data_root, split='test', num_classes=official_classes))
test_dataloader = val_dataloader
