# mmseg's ADE20k pipeline (512x512 crops from RandomResize(2048, 512) x 0.5-2.0, flip, photometric distortion;
# test at (2048, 512); multi-scale 0.5-1.75 + flip TTA), at 2 images per GPU x 8 GPUs. The training set is checked
# before training (CheckedDataset) and draws its augmentation per sample (ReproducibleSampler), so a resumed run
# replays it exactly; annotations are checked against their image's size and the 150 classes (CheckSegAnnotation).
_base_ = ['mmseg::_base_/datasets/ade20k.py']
train_pipeline = _base_.train_pipeline
train_pipeline.insert(2, dict(type='CheckSegAnnotation', num_classes=150))  # after LoadAnnotations
test_pipeline = _base_.test_pipeline
test_pipeline.insert(3, dict(type='CheckSegAnnotation', num_classes=150))
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
