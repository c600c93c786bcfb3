# cosub ViT-H/14 (DeiT III), ImageNet-1k, 800 epochs at 160 (DeiT III's ViT-H recipe, METHOD.md: LAMB 3e-3 for a
# batch of 2048, drop-path 0.6 constant over depth; tested at 224 after DeiT III's fine-tuning step); published
# cosub: 88.0 top-1 (DeiT III alone: 85.2 at 224). 160 px with 14-px patches: an 11x11 grid, the last 6 pixel rows and
# columns fall outside the patches (a stride-14 convolution over 160 pixels).
#
# Memory on 80 GB cards: 632 M parameters with their gradients, LAMB's two moments and the EMA take ~12 GB before
# any activation, and cosub runs every image twice; so every block is checkpointed (model.grad_checkpointing) and the
# recipe is meant to run with --amp. Check a batch per GPU and option set before renting the GPUs with
# `tools/analyze_model.py configs/pretrain/cosub_deit3-huge_in1k.py --memory --amp [--batch-size N]`. 64 per GPU x 32
# GPUs = 2048; on 16 GPUs keep the global batch with optim_wrapper.accumulative_counts=2.
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
    grad_checkpointing=True,
)
optim_wrapper = dict(optimizer=dict(lr=3e-3), accumulative_counts=1)
