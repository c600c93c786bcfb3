# A timm network trained with cosub: two stochastic-depth submodels per batch, BCE on binarised mixup targets.
num_classes = 1000
model = dict(
    type='CosubClassifier',
    arch='deit3_small_patch16_224',
    num_classes=num_classes,
    # Stochastic depth (cosub_seg/cosub/stochastic_depth.py, StochasticDepthConfig): rate; schedule 'linear' (timm's)
    # or 'constant' (the DeiT III recipes, as the authors' code); compute 'auto' skips the dropped rows of a branch
    # from the measured break-even rate on ('skip' or 'mask' force one); sampling 'fixed' keeps a fixed count of
    # rows per step (static shapes for torch.compile).
    stochastic_depth=dict(rate=0.05, schedule='linear', compute='auto', sampling='bernoulli'),
    model_kwargs=dict(),
    num_submodels=2,  # 1 trains the same recipe without co-training
    lam=0.5,
    loss_type='bce',
    binarize_threshold=0.0,  # DeiT III's --bce-loss; needs label smoothing 0
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0),
    ),
)
