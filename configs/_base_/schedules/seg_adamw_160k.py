# AdamW with layer-wise lr decay 0.9 (no weight decay on norms, biases, position embeddings), linear warm-up for
# 1,500 iterations then poly decay, 160k iterations at a batch of 16 (8 GPUs x 2).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # MMEngine's CheckpointHook with atomic writes and deletions after the new checkpoint is complete.
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=16000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # mmseg's SegVisualizationHook (cosub_seg/runtime/hooks.py: it does not build the training set in a test run).
    # Draws only when asked (draw=True: --show-dir of tools/test_seg.py and of mmseg's tools/test.py), then every
    # image: mmseg's default interval of 50 batches left --show-dir with one picture in 50, or none on a short set.
    visualization=dict(type='PredictionVisualizationHook', interval=1),
    # Reliability (cosub_seg/runtime/hooks.py): exact resume, logs of the global batch, stop on a non-finite loss,
    # log skipped bad samples, refuse checkpoints that do not fit the model, stop cleanly when preempted.
    exact_resume=dict(type='ExactResumeHook'),
    global_mean_log=dict(type='GlobalMeanLogHook'),
    non_finite_loss=dict(type='NonFiniteLossHook'),
    skipped_samples=dict(type='SkippedSampleLogHook'),
    checkpoint_fit=dict(type='CheckpointFitHook'),
    # On SIGTERM / SIGUSR1 (slurm's preemption and time-limit signals): finish the step, write iter_<n>.pth
    # atomically, exit with status 75, which tools/slurm_launch.sh requeues (cosub_seg/runtime/preemption.py).
    preemption=dict(type='PreemptionHook', signals=['SIGTERM', 'SIGUSR1']),
    # The validation split before the first training step, the test split before the first test step: files,
    # decoding, annotations, and the class counts of heads, datasets and annotation checks (see
    # cosub_seg/runtime/split_checks.py).
    split_check=dict(type='SplitCheckHook'),
)
auto_scale_lr = dict(enable=False, base_batch_size=16)
