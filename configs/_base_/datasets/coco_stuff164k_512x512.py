# mmseg's COCO-Stuff-164k pipeline (512x512 crops from RandomResize(2048, 512) x 0.5-2.0, flip, photometric
# distortion; test at (2048, 512); multi-scale 0.5-1.75 + flip TTA) at 4 images per GPU x 4 GPUs, the batch of
# mmseg's configs/pspnet/pspnet_r50-d8_4xb4-80k_coco-stuff164k-512x512.py (mmseg has no UperNet recipe for this set;
# its deeplabv3 4xb4-80k one uses the same batch). Labels are annotations/{train2017,val2017}/*_labelTrainIds.png:
# the 171 classes as 0-170, 255 ignored, no reduce_zero_label (the release's stuffthingmaps hold the 182 ids 0-181:
# `python tools/prepare_data.py coco_stuff164k --convert` writes them, see data/README.md). As in ade20k_8x2.py the
# training set is checked before training (CheckedDataset), draws its augmentation per sample (ReproducibleSampler),
# and annotations are checked against their image's size and the 171 classes (CheckSegAnnotation).
_base_ = ['mmseg::_base_/datasets/coco-stuff164k.py']
train_pipeline = _base_.train_pipeline
train_pipeline.insert(2, dict(type='CheckSegAnnotation', num_classes=171))  # after LoadAnnotations
test_pipeline = _base_.test_pipeline
test_pipeline.insert(3, dict(type='CheckSegAnnotation', num_classes=171))
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
