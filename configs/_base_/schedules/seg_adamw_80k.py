# seg_adamw_160k.py over 80k iterations, as mmseg's 80k recipes (configs/_base_/schedules/schedule_80k.py,
# configs/vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py): the same AdamW with layer-wise lr decay 0.9, the
# same linear warm-up for 1,500 iterations, then poly decay to 0 at 80k; validation and a checkpoint every 8,000
# iterations (schedule_80k.py's interval), the last 3 kept. The batch is the dataset config's; the lr is the one
# seg_adamw_160k.py sets for a batch of 16 (auto_scale_lr's base_batch_size, off unless --auto-scale-lr).
_base_ = ['./seg_adamw_160k.py']
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000, by_epoch=False),
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
