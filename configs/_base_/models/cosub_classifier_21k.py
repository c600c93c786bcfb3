# The classifier of DeiT III's ImageNet-21k recipe, trained with cosub: soft-target cross-entropy with label smoothing
# 0.1 on cutmix targets (README_revenge.md: --mixup 0 --cutmix 1.0 --smoothing 0.1, no --bce-loss), 19,167 classes
# (winter21; see configs/_base_/datasets/imagenet21k_3aug_src.py for fall11).
_base_ = ['./cosub_classifier.py']
num_classes = 19167
model = dict(
    num_classes=num_classes,
    loss_type='ce',
    binarize_threshold=None,
    data_preprocessor=dict(num_classes=num_classes,
                           mixup=dict(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)),
)
