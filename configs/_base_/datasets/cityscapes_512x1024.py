# mmseg's Cityscapes pipeline (512x1024 crops from RandomResize(2048, 1024) x 0.5-2.0, flip, photometric distortion;
# test at (2048, 1024); multi-scale 0.5-1.75 + flip TTA) at 2 images per GPU x 4 GPUs, the batch of mmseg's
# configs/upernet/upernet_r50_4xb2-80k_cityscapes-512x1024.py. Labels are gtFine's *_gtFine_labelTrainIds.png: the
# 19 evaluated classes as 0-18, 255 ignored, no reduce_zero_label (the release has only *_gtFine_labelIds.png:
# `python tools/prepare_data.py cityscapes --convert` writes them, see data/README.md). As in ade20k_8x2.py the
# training set is checked before training (CheckedDataset), draws its augmentation per sample (ReproducibleSampler),
# and annotations are checked against their image's size and the 19 classes (CheckSegAnnotation).
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
train_pipeline = _base_.train_pipeline
train_pipeline.insert(2, dict(type='CheckSegAnnotation', num_classes=19))  # after LoadAnnotations
test_pipeline = _base_.test_pipeline
test_pipeline.insert(3, dict(type='CheckSegAnnotation', num_classes=19))
train_dataloader = dict(
    batch_size=2,
    sampler=dict(_delete_=True, type='ReproducibleSampler', sampler=_base_.train_dataloader.sampler),
    dataset=dict(_delete_=True, type='CheckedDataset', on_bad_sample='raise',
                 dataset=dict(_base_.train_dataloader.dataset, pipeline=train_pipeline)),
)
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
