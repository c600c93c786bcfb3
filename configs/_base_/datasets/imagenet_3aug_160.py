# The ImageNet recipe at 160x160 (DeiT III trains ViT-H at 160, then fine-tunes at 224).
_base_ = ['./imagenet_3aug_192.py']
img_size = 160
train_pipeline = _base_.train_pipeline
train_pipeline[1].size = img_size  # RandomResizedCrop
test_pipeline = _base_.test_pipeline
test_pipeline[1].size = img_size  # ResizeShortSide
test_pipeline[2].crop_size = img_size  # CenterCrop
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
