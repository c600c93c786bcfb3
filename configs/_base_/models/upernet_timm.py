# UperNet (UPerHead, pool scales 1/2/3/6, 512 channels) + auxiliary FCN head (weight 0.4) on a timm backbone.
# CosubEncoderDecoder with num_submodels=1 is mmseg's EncoderDecoder; set 2 for cosub during fine-tuning.
num_classes = 150
norm_cfg = dict(type='SyncBN', requires_grad=True)  # tools turn it into BN where there is no GPU
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512),  # pad training crops to this size
)
model = dict(
    type='CosubEncoderDecoder',
    num_submodels=1,
    lam=0.5,
    data_preprocessor=data_preprocessor,
    # stochastic depth as in the pretraining base config (compute='auto' skips the dropped rows of a branch)
    backbone=dict(type='TimmSegBackbone', arch='convnext_base',
                  stochastic_depth=dict(rate=0.3, schedule='linear', compute='auto', sampling='bernoulli')),
    decode_head=dict(
        type='UPerHead',
        in_channels=[128, 256, 512, 1024],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=512,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4),
    ),
    train_cfg=dict(),
    # crop_batch_size: windows per forward, chosen by timing the first images (CosubEncoderDecoder); 1 = mmseg's
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341), crop_batch_size='auto'),
)
