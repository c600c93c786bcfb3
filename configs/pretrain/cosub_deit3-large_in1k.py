# cosub ViT-l (DeiT III), ImageNet-1k, 800 epochs at 192 (tested at 224 after DeiT III's fine-tuning step);
# published: 87.5 top-1 (DeiT III alone: 84.9 at 224). Drop-path 0.45, constant over depth as in the authors' code.
_base_ = [
    '../_base_/models/cosub_classifier.py',
    '../_base_/datasets/imagenet_3aug.py',
    '../_base_/schedules/lamb_800e.py',
    '../_base_/default_runtime.py',
]
img_size = 192
model = dict(
    arch='deit3_large_patch16_224',
    drop_path_rate=0.45,
    drop_path_schedule='constant',
    model_kwargs=dict(img_size=img_size),
)
optim_wrapper = dict(optimizer=dict(lr=3e-3))

train_pipeline = _base_.train_pipeline
train_pipeline[1].size = img_size
test_pipeline = _base_.test_pipeline
test_pipeline[1].size = img_size
test_pipeline[2].crop_size = img_size
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
