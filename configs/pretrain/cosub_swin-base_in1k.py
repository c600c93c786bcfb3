# cosub Swin-B, ImageNet-1k at 224; published: 86.2 top-1. Drop-path 0.5 and a linear schedule: Swin-B's own
# ImageNet-1k recipe (METHOD.md gives no cosub rate for it).
_base_ = [
    '../_base_/models/cosub_classifier.py',
    '../_base_/datasets/imagenet_3aug.py',
    '../_base_/schedules/lamb_800e.py',
    '../_base_/default_runtime.py',
]
model = dict(arch='swin_base_patch4_window7_224', stochastic_depth=dict(rate=0.5), model_kwargs=dict(img_size=224))
