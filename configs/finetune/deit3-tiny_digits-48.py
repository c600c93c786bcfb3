# The embedded fine-tuning example: the digits backbone of `make demo` (configs/pretrain/cosub_deit3-tiny_digits.py,
# 32x32, 8-px patches) fine-tuned at 48x48: its 4x4 position embeddings resampled to 6x6 (bicubic), the recipe of
# DeiT III's fine-tuning scaled to the digits (AdamW, 5 epochs, label smoothing 0.1, no mixup). A minute on 2 cores.
#   python tools/finetune.py configs/finetune/deit3-tiny_digits-48.py --checkpoint work_dirs/demo/pretrain/epoch_15.pth
_base_ = ['../pretrain/cosub_deit3-tiny_digits.py']
img_size = 48
model = dict(
    num_submodels=1,
    loss_type='ce',
    model_kwargs=dict(img_size=img_size),
    data_preprocessor=dict(label_smoothing=0.1),
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/pretrain/epoch_15.pth'),
)
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='RandomResizedCrop', size=img_size, scale=(0.6, 1.0), interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='cv2'),
    dict(type='ResizeShortSide', size=img_size, interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
max_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
