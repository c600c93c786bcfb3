# iNaturalist 2018 for transfer fine-tuning. Layout: the competition files of
# https://github.com/visipedia/inat_comp/tree/master/2018 in data/inat2018: train2018.json, val2018.json and
# train_val2018/ (train_val2018.tar.gz unpacked), optionally categories.json (the un-obfuscated names)
# (data/README.md). 437,513 training and 24,426 validation images of 8,142 species; classes as DeiT's INatDataset
# numbers them (category='name'; another level, e.g. 'genus', needs its own official_classes).
_base_ = ['./transfer_224.py']
dataset_type = 'INaturalistDataset'
data_root = 'data/inat2018'
inat_year = 2018
inat_category = 'name'  # DeiT's --inat-category; another level needs its own official_classes
official_classes = 8142  # the official count; the dataset refuses another (metainfo['classes'])
train_dataloader = dict(num_workers=10, dataset=dict(dataset=dict(
    type=dataset_type, data_root=data_root, split='train', num_classes=official_classes,
    year=inat_year, category=inat_category)))
val_dataloader = dict(num_workers=10, dataset=dict(
    type=dataset_type, data_root=data_root, split='val', num_classes=official_classes,
    year=inat_year, category=inat_category))
test_dataloader = val_dataloader
