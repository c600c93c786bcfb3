# imagenet_finetune.py at 384x384 (DeiT III's 384 fine-tuning).
_base_ = ['./imagenet_finetune.py']
img_size = 384
train_pipeline = _base_.train_pipeline
train_pipeline[1].size = img_size  # RandomResizedCrop
train_pipeline[3].img_size = img_size  # TimmRandAugment's translations
test_pipeline = _base_.test_pipeline
test_pipeline[1].size = img_size  # ResizeShortSide
test_pipeline[2].crop_size = img_size  # CenterCrop
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
