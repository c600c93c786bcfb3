# cosub PiT-B, ImageNet-1k at 224; published: 85.8 top-1. Drop-path 0.3, linear (METHOD.md gives no cosub
# rate for it).
_base_ = [
    '../_base_/models/cosub_classifier.py',
    '../_base_/datasets/imagenet_3aug.py',
    '../_base_/schedules/lamb_800e.py',
    '../_base_/default_runtime.py',
]
model = dict(arch='pit_b_224', stochastic_depth=dict(rate=0.3), model_kwargs=dict(img_size=224))
