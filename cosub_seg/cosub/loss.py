"""Submodel co-training loss.

Implements the loss of "Co-training 2^L Submodels for Visual Recognition" (Touvron et al., CVPR 2023,
https://arxiv.org/abs/2212.04884): the same images run through k stochastic-depth submodels of one network, and
each submodel learns from the labels and, with stop-gradient, from the mean prediction of the other submodels.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

LOSS_TYPES = ('bce', 'ce')


class CosubLoss(NamedTuple):
    """The total loss and its two weighted parts: ``total == label + peer``."""

    total: torch.Tensor
    label: torch.Tensor
    peer: torch.Tensor


def _dense_target(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    if target.dim() == 1:
        if target.dtype.is_floating_point:
            raise ValueError(f'a (B,) target must hold class indices (an integer dtype), got {target.dtype}')
        return F.one_hot(target, num_classes).to(dtype)
    if target.dim() == 2:
        if target.shape[1] != num_classes:
            raise ValueError(f'target has {target.shape[1]} classes but the logits have {num_classes}')
        return target.to(dtype)
    raise ValueError(f'target must be (B,) class indices or (B, C) scores, got shape {tuple(target.shape)}')


def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


def cosub_loss(logits: torch.Tensor,
               target: torch.Tensor,
               lam: float = 0.5,
               loss_type: str = 'bce',
               binarize_threshold: Optional[float] = None) -> CosubLoss:
    """Co-training loss of k submodels that saw the same images.

    For submodel i with logits o_i, the loss is ``(1 - lam) * L(o_i, y) + lam * L(o_i, sg(t_i))`` where ``t_i`` is
    the mean of the other submodels' probabilities and ``sg`` stops the gradient; the result is averaged over the
    k submodels. With ``loss_type='bce'`` (the paper's choice) ``L`` is binary cross-entropy with logits averaged
    over batch and classes and probabilities are sigmoids; with ``'ce'`` ``L`` is soft-target cross-entropy and
    probabilities are softmaxes. With k = 2 and lam = 0.5 the BCE form is the reference
    ``0.25 * [BCE(o1, y) + BCE(o2, y) + BCE(o1, sg(σ(o2))) + BCE(o2, sg(σ(o1)))]``. With k = 1 there is no peer:
    the loss is plain ``L(o_1, y)`` (lam is ignored), which is the baseline cosub is compared with.

    Args:
        logits: (k, B, C) outputs of k submodels for the same B images.
        target: (B,) class indices, or (B, C) one-hot, multi-hot or soft (mixup/cutmix) targets.
        lam: weight of the peer term, in [0, 1].
        loss_type: 'bce' or 'ce'.
        binarize_threshold: if given, targets become ``target > binarize_threshold`` (DeiT III's ``--bce-loss``
            uses 0.0, which needs label smoothing off).

    Returns:
        ``CosubLoss(total, label, peer)``, each a scalar tensor; label and peer already carry their weights.
    """
    if logits.dim() != 3:
        raise ValueError(f'logits must have shape (k, B, C), got {tuple(logits.shape)}')
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f'lam must be in [0, 1], got {lam}')
    if loss_type not in LOSS_TYPES:
        raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
    k, batch, num_classes = logits.shape
    target = _dense_target(target, num_classes, logits.dtype)
    if target.shape[0] != batch:
        raise ValueError(f'target has {target.shape[0]} rows but the logits have a batch of {batch}')
    if binarize_threshold is not None:
        target = target.gt(binarize_threshold).to(logits.dtype)

    if loss_type == 'bce':
        criterion = F.binary_cross_entropy_with_logits
        probs = logits.detach().sigmoid()
    else:
        criterion = _soft_cross_entropy
        probs = logits.detach().softmax(dim=-1)

    label = sum(criterion(logits[i], target) for i in range(k)) / k
    if k == 1:
        return CosubLoss(total=label, label=label, peer=torch.zeros_like(label))
    others_sum = probs.sum(dim=0)
    peer = sum(criterion(logits[i], (others_sum - probs[i]) / (k - 1)) for i in range(k)) / k
    label, peer = (1.0 - lam) * label, lam * peer
    return CosubLoss(total=label + peer, label=label, peer=peer)


def cosub_pixel_peer_loss(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-pixel peer term for dense prediction: each of k submodels learns, with soft-target cross-entropy, the mean
    softmax of the others (stop-gradient), averaged over the valid pixels and the submodels.

    Args:
        logits: (k, B, C, H, W) logits of k submodels for the same B images.
        valid: (B, H, W) bool mask, False where the label is the ignore index.

    Returns:
        A scalar; 0 when no pixel is valid. Weight it with lam, and the label term with 1 - lam, as in
        :func:`cosub_loss`.
    """
    if logits.dim() != 5:
        raise ValueError(f'logits must have shape (k, B, C, H, W), got {tuple(logits.shape)}')
    k = logits.shape[0]
    if k < 2:
        raise ValueError('the peer term needs k >= 2 submodels')
    if valid.shape != (logits.shape[1], *logits.shape[3:]):
        raise ValueError(f'valid mask {tuple(valid.shape)} does not match logits {tuple(logits.shape)}')
    probs = logits.detach().softmax(dim=2)
    others_sum = probs.sum(dim=0)
    log_probs = logits.log_softmax(dim=2)
    count = valid.sum().clamp(min=1)
    total = logits.new_zeros(())
    for i in range(k):
        teacher = (others_sum - probs[i]) / (k - 1)
        per_pixel = -(teacher * log_probs[i]).sum(dim=1)  # (B, H, W)
        total = total + (per_pixel * valid).sum() / count
    return total / k
