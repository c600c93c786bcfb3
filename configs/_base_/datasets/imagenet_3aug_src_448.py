# imagenet_3aug_src.py at 448x448.
_base_ = ['./imagenet_3aug_src.py']
img_size = 448
train_pipeline = _base_.train_pipeline
train_pipeline[1].size = img_size  # ResizeShortSide
train_pipeline[2].size = img_size  # RandomCrop
test_pipeline = _base_.test_pipeline
test_pipeline[1].size = img_size  # ResizeShortSide
test_pipeline[2].crop_size = img_size  # CenterCrop
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
