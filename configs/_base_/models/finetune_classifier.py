# A classifier fine-tuned from a checkpoint with DeiT III's fine-tuning recipe (facebookresearch/deit,
# README_revenge.md): soft-target cross-entropy on mixup 0.8 / cutmix 1.0 targets with label smoothing 0.1, no
# co-training by default (cosub during fine-tuning: model.num_submodels=2, which needs a drop-path rate > 0).
# The checkpoint comes from `tools/finetune.py CONFIG --checkpoint PATH` (model.init_cfg): position embeddings are
# resampled to img_size, the classifier is replaced when the class count differs.
_base_ = ['./cosub_classifier.py']
model = dict(
    num_submodels=1,
    loss_type='ce',
    binarize_threshold=None,
    data_preprocessor=dict(mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)),
)
