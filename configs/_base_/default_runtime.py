# Runtime shared by the pretraining recipes.
default_scope = 'cosub_seg'
# Our modules, and the process-wide changes a run needs (cosub_seg/runtime/patches.py: weights-only loading
# everywhere, also in mmseg's own tools; see ARCHITECTURE.md).
custom_imports = dict(imports=['cosub_seg', 'cosub_seg.runtime.installed'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # MMEngine's CheckpointHook with atomic writes and deletions after the new checkpoint is complete.
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=3, save_best='accuracy/top1',
                    rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
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
    # The validation split before the first training step, the test split before the first test step: every file
    # exists and decodes (cosub_seg/runtime/split_checks.py).
    split_check=dict(type='SplitCheckHook'),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl', timeout=1800),  # seconds a collective waits for a dead process before failing
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=50)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)

# DeiT keeps an EMA of the weights (decay 0.99996 per optimiser step); validation and checkpoints use it, the raw
# weights are kept too. StepEMAHook is MMEngine's EMAHook, updating once per optimiser step when
# optim_wrapper.accumulative_counts accumulates gradients over several iterations.
custom_hooks = [dict(type='StepEMAHook', momentum=4e-5, update_buffers=True, priority='ABOVE_NORMAL')]
