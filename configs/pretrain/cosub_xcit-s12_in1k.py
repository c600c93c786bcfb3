# cosub XCiT-S12/16, ImageNet-1k at 224 (no published cosub number). Drop-path 0.1, XCiT-S12's own recipe.
_base_ = [
    '../_base_/models/cosub_classifier.py',
    '../_base_/datasets/imagenet_3aug.py',
    '../_base_/schedules/lamb_800e.py',
    '../_base_/default_runtime.py',
]
model = dict(arch='xcit_small_12_p16_224', stochastic_depth=dict(rate=0.1), model_kwargs=dict(img_size=224))
