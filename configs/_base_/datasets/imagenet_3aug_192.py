# The ImageNet recipe at 192x192 (DeiT III trains ViT-B/L at 192, then fine-tunes at 224).
_base_ = ['./imagenet_3aug.py']
img_size = 192
train_pipeline = _base_.train_pipeline
train_pipeline[1].size = img_size  # RandomResizedCrop
test_pipeline = _base_.test_pipeline
test_pipeline[1].size = img_size  # ResizeShortSide
test_pipeline[2].crop_size = img_size  # CenterCrop
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
