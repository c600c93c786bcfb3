# Stanford Cars for transfer fine-tuning. Layout: the devkit release in data/stanford_cars: cars_train/, cars_test/,
# devkit/ (cars_train.tgz, cars_test.tgz, car_devkit.tgz unpacked) and cars_test_annos_withlabels.mat (at the root or
# in devkit/) (data/README.md). 8,144 training and 8,041 test images of 196 classes, whole images (no box crop); the
# validation loader is the test split.
_base_ = ['./transfer_224.py']
dataset_type = 'StanfordCarsDataset'
data_root = 'data/stanford_cars'
official_classes = 196  # the official count; the dataset refuses another (metainfo['classes'])
train_dataloader = dict(dataset=dict(dataset=dict(
    type=dataset_type, data_root=data_root, split='train', num_classes=official_classes)))
val_dataloader = dict(dataset=dict(
    type=dataset_type, data_root=data_root, split='test', num_classes=official_classes))
test_dataloader = val_dataloader
