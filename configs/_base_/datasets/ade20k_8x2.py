# mmseg's ADE20k pipeline (512x512 crops from RandomResize(2048, 512) x 0.5-2.0, flip, photometric distortion;
# test at (2048, 512); multi-scale 0.5-1.75 + flip TTA), at 2 images per GPU x 8 GPUs.
_base_ = ['mmseg::_base_/datasets/ade20k.py']
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
