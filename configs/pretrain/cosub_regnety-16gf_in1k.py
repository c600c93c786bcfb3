# cosub RegNetY-16GF, ImageNet-1k at 224; published: 84.2 top-1. RegNet has BatchNorm: SyncBN on GPUs.
# Drop-path 0.2, linear (METHOD.md gives no cosub rate for it).
_base_ = [
    '../_base_/models/cosub_classifier.py',
    '../_base_/datasets/imagenet_3aug.py',
    '../_base_/schedules/lamb_800e.py',
    '../_base_/default_runtime.py',
]
model = dict(arch='regnety_160', stochastic_depth=dict(rate=0.2))
sync_bn = 'torch'
