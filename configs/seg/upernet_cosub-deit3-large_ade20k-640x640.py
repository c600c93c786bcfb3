# cosub ViT-L (DeiT III) + MultiLevelNeck + UperNet, ADE20k at 640x640 crops (mmseg's 640 pipeline: RandomResize
# (2560, 640) x 0.5-2.0, test at (2560, 640), slide windows of 640), 160k iterations, batch 16 (8 GPUs x 2). The
# position embeddings are resampled from the pretraining grid to 40x40.
#
# Memory per GPU, estimated with `tools/analyze_model.py configs/seg/upernet_cosub-deit3-large_ade20k-640x640.py
# --memory --batch-size 2` (bench/training_memory.py, docs/benchmarks.md), fp32: 13.3 GiB at 2 crops per GPU,
# 24.3 GiB with cosub during fine-tuning (model.num_submodels=2), 40.4 GiB at 8 crops, 20.5 GiB at 8 crops with
# --cfg-options model.backbone.grad_checkpointing=True. An 80 GB card needs no memory option at this recipe's batch.
_base_ = ['./upernet_cosub-deit3-large_ade20k-512x512.py']
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=640),
    test_cfg=dict(crop_size=crop_size, stride=(426, 426)),
)
train_pipeline = _base_.train_pipeline
train_pipeline[3].scale = (2560, 640)  # RandomResize (after LoadImageFromFile, LoadAnnotations, CheckSegAnnotation)
train_pipeline[4].crop_size = crop_size  # RandomCrop
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (2560, 640)  # Resize
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
