# mmseg's Pascal Context 59 pipeline (480x480 crops from RandomResize(520, 520) x 0.5-2.0, flip, photometric
# distortion; test at (520, 520); multi-scale 0.5-1.75 + flip TTA) at 4 images per GPU x 4 GPUs, the batch of
# mmseg's configs/pspnet/pspnet_r50-d8_4xb4-80k_pascal-context-59-480x480.py (mmseg has no UperNet recipe for this
# set; its deeplabv3plus and fcn 4xb4-80k ones use the same batch). Labels are SegmentationClassContext/*.png from
# mmseg's tools/dataset_converters/pascal_context.py: 0 background, 1-59 the classes; PascalContextDataset59 sets
# reduce_zero_label=True, so background becomes the ignore index 255 and the classes 0-58. As in ade20k_8x2.py the
# training set is checked before training (CheckedDataset), draws its augmentation per sample (ReproducibleSampler),
# and annotations are checked against their image's size and the 59 classes after that reduction
# (CheckSegAnnotation).
_base_ = ['mmseg::_base_/datasets/pascal_context_59.py']
train_pipeline = _base_.train_pipeline
train_pipeline.insert(2, dict(type='CheckSegAnnotation', num_classes=59))  # after LoadAnnotations
test_pipeline = _base_.test_pipeline
test_pipeline.insert(3, dict(type='CheckSegAnnotation', num_classes=59))
train_dataloader = dict(
    batch_size=4,
    sampler=dict(_delete_=True, type='ReproducibleSampler', sampler=_base_.train_dataloader.sampler),
    dataset=dict(_delete_=True, type='CheckedDataset', on_bad_sample='raise',
                 dataset=dict(_base_.train_dataloader.dataset, pipeline=train_pipeline)),
)
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
