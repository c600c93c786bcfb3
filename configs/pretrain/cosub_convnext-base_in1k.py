# cosub ConvNeXt-B, ImageNet-1k at 224; published: 85.8 top-1. Drop-path 0.5, linear: ConvNeXt-B's own
# ImageNet-1k recipe (METHOD.md gives no cosub rate for it).
_base_ = [
    '../_base_/models/cosub_classifier.py',
    '../_base_/datasets/imagenet_3aug.py',
    '../_base_/schedules/lamb_800e.py',
    '../_base_/default_runtime.py',
]
model = dict(arch='convnext_base', stochastic_depth=dict(rate=0.5))
