# UperNet on a plain ViT: four blocks (TimmSegBackbone's default (3, 5, 7, 11) of 12) at stride 16, turned into
# strides 4/8/16/32 by mmseg's MultiLevelNeck. A recipe sets the arch and the width in neck and heads.
_base_ = ['./upernet_timm.py']
model = dict(
    backbone=dict(arch='deit3_base_patch16_224', img_size=512, stochastic_depth=dict(rate=0.1)),
    neck=dict(type='MultiLevelNeck', in_channels=[768] * 4, out_channels=768, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768] * 4),
    auxiliary_head=dict(in_channels=768),
)
