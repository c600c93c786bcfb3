# cosub ViT-H/14 (DeiT III), ImageNet-1k, 800 epochs at 160 (DeiT III's ViT-H recipe, METHOD.md: LAMB 3e-3 for a
# batch of 2048, drop-path 0.6 constant over depth; tested at 224 after DeiT III's fine-tuning step); published
# cosub: 88.0 top-1 (DeiT III alone: 85.2 at 224). 160 px with 14-px patches: an 11x11 grid, the last 6 pixel rows and
# columns fall outside the patches (a stride-14 convolution over 160 pixels).
#
# Memory per GPU, estimated with `tools/analyze_model.py configs/pretrain/cosub_deit3-huge_in1k.py --memory --amp`
# (bench/training_memory.py, docs/benchmarks.md): at 64 images per GPU (x 2 cosub copies) with --amp, 22.4 GiB
# at the peak, of which 9.4 GiB are weights, LAMB's moments and the EMA and 12.9 GiB activations, so an 80 GB card
# needs no activation checkpointing; model.grad_checkpointing=True brings the peak to 13.3 GiB (for 40 GB cards or
# larger batches, at about 1.3x the step time). The 'fixed' draws below matter: Bernoulli draws mask on a GPU and
# keep every row's activations. 64 per GPU x 32 GPUs = 2048; on 16 GPUs keep the global batch with
# optim_wrapper.accumulative_counts=2. --fsdp (tools/dist_pretrain.sh ... --fsdp) shards the 9.4 GiB of weights, LAMB's
# moments and EMA across the processes (1/N each; docs/scale.md).
_base_ = [
    '../_base_/models/cosub_classifier.py',
    '../_base_/datasets/imagenet_3aug_160.py',
    '../_base_/schedules/lamb_800e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    arch='deit3_huge_patch14_224',
    # 'fixed' draws (a fixed count of rows per step, DINOv2's choice) so the dropped 60 % of each branch's rows are
    # skipped on the GPU too: Bernoulli draws mask there (StochasticDepth.skips_on), keeping every row's activations.
    stochastic_depth=dict(rate=0.6, schedule='constant', sampling='fixed'),
    model_kwargs=dict(img_size=160),
    grad_checkpointing=False,
)
optim_wrapper = dict(optimizer=dict(lr=3e-3), accumulative_counts=1)
