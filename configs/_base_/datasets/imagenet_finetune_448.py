# imagenet_finetune.py at 448x448 (the resolution of cosub's 87.4% ViT-B; no published command, see
# configs/finetune/deit3-base_in21k-to-in1k-448.py).
_base_ = ['./imagenet_finetune_384.py']
img_size = 448
train_pipeline = _base_.train_pipeline
train_pipeline[1].size = img_size  # RandomResizedCrop
train_pipeline[3].img_size = img_size  # TimmRandAugment's translations
test_pipeline = _base_.test_pipeline
test_pipeline[1].size = img_size  # ResizeShortSide
test_pipeline[2].crop_size = img_size  # CenterCrop
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
