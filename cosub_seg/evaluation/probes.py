"""Frozen-backbone evaluation on classification features: extraction, feature files, kNN and the linear probe.

Plain PyTorch; the tools compose it (features once, probes many):

* :func:`extract_features` / :func:`extract_feature_sets`: the frozen features of a timm network over batches of
  ``(images, labels)``, in eval mode and without gradient: the class token, the average-pooled patch tokens, or both,
  of each of the last n blocks, concatenated (DINOv2's options). :func:`save_features` / :func:`load_features` keep
  them in a file that says which backbone made them, and refuse a file of another backbone.
* :func:`knn_evaluate`: the weighted k-nearest-neighbour classifier of DINO's protocol: cosine similarity of
  L2-normalised features, the k most similar training samples vote with weight ``exp(similarity / T)``, T = 0.07.
* :func:`linear_probe`: DINOv2's protocol: many linear heads, one per (feature choice, learning rate), trained at
  once on the frozen features; the best one chosen on a held-out part of the training features (seeded, stratified),
  never on val, and only that head is measured on val.

Accuracies are in percent, as :class:`cosub_seg.evaluation.Accuracy` reports them. A validation sample counts as
top-k correct when fewer than k classes score higher than its own (for kNN its class must also have got a vote), so
ties between classes never depend on the order a sort happens to leave them in.
"""
import inspect
import math
import os
import os.path as osp
import pickle
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, ConfigTypeError, DataError, MissingFileError, UnsafeCheckpointError
from ..progress import ThrottledProgressBar

KINDS = ('cls', 'avgpool', 'cls+avgpool')
KNN_KS = (10, 20, 100)
KNN_TEMPERATURE = 0.07
SGD_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
ADAMW_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
FEATURE_FORMAT = 'cosub_seg.features/1'

Features = Union[torch.Tensor, Mapping[str, torch.Tensor]]


# --------------------------------------------------------------------------------------------------- extraction

def feature_name(kind: str, last_n_blocks: int = 1) -> str:
    """The name of a feature choice: ``'cls'``, ``'cls+avgpool'``, ``'cls/last4'``..."""
    return kind if last_n_blocks == 1 else f'{kind}/last{last_n_blocks}'


def _check_choice(kind, last_n_blocks, available: int, model_name: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f'feature kind {kind!r} is unknown: use one of {", ".join(KINDS)}')
    if isinstance(last_n_blocks, bool) or not isinstance(last_n_blocks, int) or not 1 <= last_n_blocks <= available:
        raise ConfigError(f'last_n_blocks={last_n_blocks!r} does not fit {model_name}, which has {available} blocks '
                          f'(or stages) to take features from: use an integer from 1 to {available}')


def _is_token_vit(model: nn.Module) -> bool:
    """A ViT whose ``forward_intermediates`` hands out the prefix (class, register) tokens and normalises every
    intermediate (timm's ``VisionTransformer`` and its kin)."""
    params = inspect.signature(model.forward_intermediates).parameters
    return 'return_prefix_tokens' in params and 'norm' in params and hasattr(model, 'num_prefix_tokens')


def _block_count(model: nn.Module) -> int:
    info = getattr(model, 'feature_info', None)
    if info:
        return len(info)
    return len(getattr(model, 'blocks', []))


def has_class_token(model: nn.Module) -> bool:
    """Whether the network has a class token (ViT-style), or pools with one (PiT, XCiT): whether 'cls' exists."""
    if _is_token_vit(model):
        return getattr(model, 'cls_token', None) is not None
    return getattr(model, 'global_pool', None) == 'token'


def _choice_features(model: nn.Module, x: torch.Tensor, choices: Sequence[Tuple[str, int]]) -> List[torch.Tensor]:
    """One (B, D) tensor per choice, from one forward pass over the last max(n) blocks."""
    n_max = max(n for _, n in choices)
    want_cls = any(kind != 'avgpool' for kind, _ in choices)
    per_block = []  # (class token or None, average-pooled tokens), earliest block first
    if _is_token_vit(model):
        has_prefix = getattr(model, 'num_prefix_tokens', 0) > 0  # timm returns bare tensors without any
        outputs = model.forward_intermediates(x, indices=n_max, return_prefix_tokens=has_prefix, norm=True,
                                              output_fmt='NLC', intermediates_only=True)
        for output in outputs:
            tokens, prefix = output if has_prefix else (output, None)
            per_block.append((prefix[:, 0] if want_cls else None, tokens.mean(dim=1)))
    else:
        # Stage outputs in NCHW, the network's final norm on the last one where timm applies it; a class token
        # (PiT, XCiT) exists only after the last stage: the network's own pre-logits features.
        final, maps = model.forward_intermediates(x, indices=n_max, norm=True)
        cls = model.forward_head(final, pre_logits=True) if want_cls else None
        per_block = [(cls if i == len(maps) - 1 else None, m.mean(dim=(2, 3))) for i, m in enumerate(maps)]
    features = []
    for kind, n in choices:
        parts = []
        for cls, pooled in per_block[len(per_block) - n:]:
            if kind in ('cls', 'cls+avgpool'):
                parts.append(cls)
            if kind in ('avgpool', 'cls+avgpool'):
                parts.append(pooled)
        features.append(torch.cat(parts, dim=1))
    return features


def _unpack(batch, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ConfigTypeError(f'batch {index} is a {type(batch).__name__}, not an (images, labels) pair: give a '
                              'torch DataLoader over a dataset of (image tensor, class index) pairs, or a list of '
                              '(images, labels) tuples')
    images, labels = batch[0], batch[1]
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.is_floating_point() or labels.numel() != images.shape[0]:
        raise ConfigTypeError(f'batch {index}: the labels must be one class index per image ({images.shape[0]} '
                              f'images, labels of shape {tuple(labels.shape)} and dtype {labels.dtype})')
    return images, labels.long()


@torch.no_grad()
def extract_feature_sets(backbone: nn.Module,
                         batches: Iterable,
                         choices: Sequence[Tuple[str, int]] = (('cls', 1),),
                         device: Optional[Union[str, torch.device]] = None,
                         progress=False,
                         autocast_dtype: Optional[torch.dtype] = None) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """The features of several choices in one pass over the data: ``({feature_name(kind, n): (N, D) float32},
    labels (N,) int64)``, both on the CPU. See :func:`extract_features` for the arguments; ``choices`` lists
    ``(kind, last_n_blocks)`` pairs."""
    if not hasattr(backbone, 'forward_intermediates'):
        raise ConfigTypeError(f'{type(backbone).__name__} has no forward_intermediates(): pass the timm network '
                              'itself (CosubClassifier.backbone, or a model of timm.create_model)')
    model_name = type(backbone).__name__
    choices = [tuple(choice) for choice in choices]
    if not choices:
        raise ConfigError('choices is empty: give at least one (kind, last_n_blocks) pair, e.g. [("cls", 1)]')
    for kind, n in choices:
        _check_choice(kind, n, _block_count(backbone), model_name)
        if kind != 'avgpool' and not has_class_token(backbone):
            raise ConfigError(f'{model_name} has no class token, so feature kind {kind!r} does not exist for it: '
                              "use kind='avgpool'")
        if kind != 'avgpool' and n > 1 and not _is_token_vit(backbone):
            raise ConfigError(f'{model_name} has its class token only after its last stage: use last_n_blocks=1 '
                              f"with kind {kind!r}, or kind='avgpool' for the last {n} stages")
    names = [feature_name(kind, n) for kind, n in choices]
    if len(set(names)) != len(names):
        raise ConfigError(f'choices {choices} name the same features twice: give each (kind, n) once')
    if device is None:
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device('cpu')
    device = torch.device(device)
    backbone.to(device)
    modes = {module: module.training for module in backbone.modules()}
    backbone.eval()
    bar, out = None, None
    if progress:
        out = sys.stdout if progress is True else progress
        bar = ThrottledProgressBar(len(batches) if hasattr(batches, '__len__') else 0, file=out)
    collected: List[List[torch.Tensor]] = [[] for _ in choices]
    labels_seen: List[torch.Tensor] = []
    try:
        for index, batch in enumerate(batches):
            images, labels = _unpack(batch, index)
            images = images.to(device, non_blocking=True)
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                    feats = _choice_features(backbone, images, choices)
            else:
                feats = _choice_features(backbone, images, choices)
            for store, feat in zip(collected, feats):
                store.append(feat.float().cpu())
            labels_seen.append(labels.cpu())
            if bar is not None:
                bar.update()
    finally:
        for module, mode in modes.items():
            module.training = mode
        if out is not None:
            out.write('\n')
    if not labels_seen:
        raise DataError('the data gave no batch, so there are no features to extract: the split is empty; check the '
                        'folder or annotation file it reads')
    return ({name: torch.cat(store) for name, store in zip(names, collected)}, torch.cat(labels_seen))


def extract_features(backbone: nn.Module,
                     batches: Iterable,
                     kind: str = 'cls',
                     last_n_blocks: int = 1,
                     device: Optional[Union[str, torch.device]] = None,
                     progress=False,
                     autocast_dtype: Optional[torch.dtype] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of a timm network: ``(features (N, D) float32, labels (N,) int64)``, on the CPU.

    The network runs in eval mode (no stochastic depth, fixed normalisation statistics) under ``torch.no_grad()``;
    every module's training flag is put back afterwards.

    Args:
        backbone: a timm network (``forward_intermediates``): a ViT (DeiT III...) or a hierarchical / conv net.
        batches: ``(images, labels)`` pairs, e.g. a ``torch.utils.data.DataLoader``; images already normalised.
        kind: per block, ``'cls'`` (the class token), ``'avgpool'`` (the mean of the patch tokens, or of a stage's
            feature map) or ``'cls+avgpool'`` (both, in that order). ViT tokens pass through the network's final
            norm, as DINOv2 takes them. Conv nets have only ``'avgpool'``; PiT and XCiT have their class token
            (the network's pre-logits features) after the last stage only.
        last_n_blocks: the features of each of the last n blocks (ViT) or stages, earliest first, concatenated:
            D = n x (width of ``kind``).
        device: where the forward runs; the backbone is moved there (default: where its parameters are).
        progress: a progress bar (:class:`cosub_seg.progress.ThrottledProgressBar`) on stdout, or on the given file.
        autocast_dtype: e.g. ``torch.bfloat16`` to run under ``torch.autocast``; the features are float32 anyway.
    """
    features, labels = extract_feature_sets(backbone, batches, [(kind, last_n_blocks)], device=device,
                                            progress=progress, autocast_dtype=autocast_dtype)
    return features[feature_name(kind, last_n_blocks)], labels


# ------------------------------------------------------------------------------------------------ feature files

@dataclass
class FeatureFile:
    """What :func:`load_features` reads: the features (a tensor, or one per feature choice), the labels and the
    metadata (``arch``, ``checkpoint`` and what :func:`save_features` was given)."""
    path: str
    features: Features
    labels: torch.Tensor
    meta: dict = field(default_factory=dict)


_PLAIN = (str, int, float, bool, type(None))


def _plain(value) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _same_checkpoint(a: Optional[str], b: Optional[str]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return osp.normcase(osp.abspath(a)) == osp.normcase(osp.abspath(b))


def save_features(path: str, features: Features, labels: torch.Tensor, *, arch: str,
                  checkpoint: Optional[str] = None, **meta) -> None:
    """Writes features (a tensor or ``{name: tensor}``) and labels to ``path`` (``torch.save``, replaced atomically),
    with ``meta = dict(arch=arch, checkpoint=<absolute path or None for random weights>, **meta)``; ``meta`` holds
    plain values only (str, numbers, lists, dicts), so :func:`load_features` reads the file with
    ``weights_only=True``."""
    if not _plain(meta):
        raise ConfigTypeError(f'metadata for {path} must hold plain values (str, int, float, bool, None, lists, '
                              f'dicts), got {meta}')
    tensors = features if isinstance(features, Mapping) else {'': features}
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[0] != len(labels):
            raise DataError(f'features {name or "(tensor)"} for {path} must be an (N, D) tensor with N = '
                            f'{len(labels)} (one row per label), got {getattr(value, "shape", type(value).__name__)}')
    data = dict(format=FEATURE_FORMAT,
                features=dict(features) if isinstance(features, Mapping) else features,
                labels=torch.as_tensor(labels).long().cpu(),
                meta=dict(meta, arch=arch, checkpoint=None if checkpoint is None else osp.abspath(checkpoint)))
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.tmp-{os.getpid()}')
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def load_features(path: str, arch: Optional[str] = None, checkpoint: Optional[str] = None,
                  check_checkpoint: bool = True) -> FeatureFile:
    """Reads a file of :func:`save_features` with ``torch.load(weights_only=True)`` (nothing in it can run code).

    Given ``arch``, a file made from another architecture is refused; with ``check_checkpoint`` (the default) so is
    one made from another checkpoint than ``checkpoint`` (None: random weights), both with a
    :class:`~cosub_seg.errors.ConfigError` that names the file and the backbone it holds.
    """
    if not osp.isfile(path):
        raise MissingFileError(f'feature file {path} does not exist: extract the features first '
                               '(extract_features, then save_features)')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        unsafe = next((line for line in lines if 'Unsupported global' in line), None)
        if unsafe is not None:
            raise UnsafeCheckpointError(f'{path} holds more than tensors and plain data and is refused, because '
                                        f'loading it could run code ({unsafe[:200]}): extract the features again'
                                        ) from None
        reason = lines[0][:200] if lines else type(err).__name__
        raise DataError(f'{path} is not a readable feature file ({reason}): a truncated copy, or not written by '
                        'torch.save; extract the features again') from None
    if not isinstance(data, dict) or data.get('format') != FEATURE_FORMAT:
        found = data.get('format') if isinstance(data, dict) else type(data).__name__
        raise ConfigTypeError(f'{path} is not a feature file of save_features (format {found!r}, expected '
                              f'{FEATURE_FORMAT!r}): extract the features again, or give the right file')
    meta = dict(data.get('meta') or {})
    if arch is not None and meta.get('arch') != arch:
        raise ConfigError(f'{path} holds features of {meta.get("arch")!r} (checkpoint {meta.get("checkpoint")}), not '
                          f'of {arch!r} as asked: extract the features of this backbone again into another file, or '
                          'give the feature file made from it')
    if check_checkpoint and arch is not None and not _same_checkpoint(meta.get('checkpoint'), checkpoint):
        made_from = meta.get('checkpoint') or 'random weights (no checkpoint)'
        asked = osp.abspath(checkpoint) if checkpoint else 'random weights (no checkpoint)'
        raise ConfigError(f'{path} holds features of {arch} made from {made_from}, not from {asked} as asked: '
                          'extract the features of this checkpoint again into another file, or give the feature '
                          'file made from it')
    labels = data['labels']
    tensors = data['features'] if isinstance(data['features'], dict) else {'': data['features']}
    for name, value in tensors.items():
        if value.shape[0] != labels.shape[0]:
            raise DataError(f'{path}: features {name or "(tensor)"} have {value.shape[0]} rows for {labels.shape[0]} '
                            'labels: the file is damaged; extract the features again')
    return FeatureFile(path=path, features=data['features'], labels=labels, meta=meta)


# ----------------------------------------------------------------------------------------------------- checks

def _check_split(features: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise DataError(f'{name}: features must be an (N, D) tensor, got '
                        f'{getattr(features, "shape", type(features).__name__)}')
    if features.shape[0] == 0:
        raise DataError(f'{name} holds no samples: the split is empty. Check the folder or annotation file the '
                        'features were extracted from, and extract them again')
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point() or \
            labels.dtype == torch.bool:
        raise DataError(f'{name}: labels must be a 1-d tensor of class indices, got '
                        f'{getattr(labels, "dtype", type(labels).__name__)} of shape '
                        f'{tuple(getattr(labels, "shape", ()))}')
    if labels.shape[0] != features.shape[0]:
        raise DataError(f'{name}: {features.shape[0]} feature rows but {labels.shape[0]} labels: extract the '
                        'features and labels of the split together')
    if not torch.isfinite(features).all():
        bad = int((~torch.isfinite(features)).any(dim=1).sum())
        raise DataError(f'{name}: {bad} samples have NaN or infinite features: the backbone overflowed (an fp16 '
                        'autocast, or a diverged checkpoint); extract again in float32, or check the checkpoint')


def check_splits(train_features: torch.Tensor, train_labels: torch.Tensor,
                 val_features: Optional[torch.Tensor] = None, val_labels: Optional[torch.Tensor] = None,
                 num_classes: Optional[int] = None, names: Tuple[str, str] = ('train features', 'val features')
                 ) -> int:
    """Checks a train split (and a val split) for the probes and returns the class count. Raises
    :class:`~cosub_seg.errors.DataError` for an empty split, labels out of range, features of different widths,
    a single-class train split or a val class the train split never shows; ``names`` name the splits (file paths,
    when the features come from files)."""
    train_name, val_name = names
    _check_split(train_features, train_labels, train_name)
    label_sets = [(train_labels, train_name)]
    if val_features is not None:
        _check_split(val_features, val_labels, val_name)
        label_sets.append((val_labels, val_name))
        if val_features.shape[1] != train_features.shape[1]:
            raise DataError(f'{train_name} have {train_features.shape[1]} dimensions but {val_name} '
                            f'{val_features.shape[1]}: they come from different backbones or feature choices (kind, '
                            'last_n_blocks); extract both splits with the same backbone and settings')
    if num_classes is None:
        num_classes = max(int(labels.max()) for labels, _ in label_sets) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f'num_classes={num_classes!r}: give the class count, an integer >= 2')
    for labels, name in label_sets:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            values = sorted({int(v) for v in labels[bad][:1000]})[:5]
            raise DataError(f'{name}: labels must lie in [0, {num_classes}) (num_classes={num_classes}), found '
                            f'{values} in {int(bad.sum())} samples: give the right num_classes, or fix the labels '
                            '(class indices from 0)')
    present = torch.bincount(train_labels.long().cpu(), minlength=num_classes) > 0
    if int(present.sum()) < 2:
        raise DataError(f'{train_name}: every sample has class {int(train_labels[0])}: a probe needs at least two '
                        'classes in the training split; check the split (its class folders or annotation file)')
    if val_labels is not None:
        val_counts = torch.bincount(val_labels.long().cpu(), minlength=num_classes)
        unseen = [c for c in range(num_classes) if val_counts[c] > 0 and not present[c]]
        if unseen:
            raise DataError(f'{val_name}: classes {unseen[:10]} ({int(val_counts[unseen].sum())} samples) never '
                            f'occur in {train_name}, so no probe can predict them: make both splits from the same '
                            'classes (the same class folders or class list), or drop those classes from val')
    return num_classes


def _hits(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int], need_positive: bool = False
          ) -> List[torch.Tensor]:
    """Per k, whether each sample's class is among its top k: fewer than k classes score strictly higher."""
    own = scores.gather(1, labels.view(-1, 1))
    rank = (scores > own).sum(dim=1)
    ok = own.view(-1) > 0 if need_positive else torch.ones_like(rank, dtype=torch.bool)
    return [(rank < k) & ok for k in ks]


# -------------------------------------------------------------------------------------------------------- kNN

def _knn_chunks(train_features, train_labels, query_features, k_max: int, chunk_size: int, device):
    """Per chunk of queries: (labels, similarities) of its k_max nearest training samples, most similar first."""
    train = F.normalize(train_features.to(device).float(), dim=1)
    train_labels = train_labels.to(device)
    for start in range(0, query_features.shape[0], chunk_size):
        query = F.normalize(query_features[start:start + chunk_size].to(device).float(), dim=1)
        sims, idx = (query @ train.T).topk(k_max, dim=1)
        yield train_labels[idx], sims


def _votes(neighbour_labels, sims, k: int, temperature: float, num_classes: int) -> torch.Tensor:
    weights = (sims[:, :k] / temperature).exp()
    scores = torch.zeros(sims.shape[0], num_classes, device=sims.device, dtype=weights.dtype)
    return scores.scatter_add_(1, neighbour_labels[:, :k], weights)


def _check_knn_args(ks, temperature, chunk_size) -> None:
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError(f'ks={ks!r}: give the neighbour counts as positive integers, e.g. (10, 20, 100)')
    if not temperature > 0:
        raise ConfigError(f'temperature={temperature!r} must be > 0 (DINO uses 0.07)')
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f'chunk_size={chunk_size!r} must be a positive integer')


def knn_class_scores(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor,
                     k: int = 20, temperature: float = KNN_TEMPERATURE, num_classes: Optional[int] = None,
                     chunk_size: int = 256, device=None) -> torch.Tensor:
    """The kNN class scores (Q, C) of each query: the sum over its k most cosine-similar training samples (k capped
    at the training size) of ``exp(similarity / temperature)``, per class of the neighbour. Queries are taken
    ``chunk_size`` at a time, so memory stays at chunk_size x N similarities."""
    _check_knn_args((k,), temperature, chunk_size)
    num_classes = check_splits(train_features, train_labels, num_classes=num_classes)
    if not isinstance(query_features, torch.Tensor) or query_features.dim() != 2 or \
            query_features.shape[1] != train_features.shape[1]:
        raise DataError(f'query features of shape {tuple(getattr(query_features, "shape", ()))} do not fit the '
                        f'training features ({train_features.shape[1]} dimensions): extract both with the same '
                        'backbone and settings')
    device = train_features.device if device is None else torch.device(device)
    k = min(k, train_features.shape[0])
    return torch.cat([_votes(labels, sims, k, temperature, num_classes).cpu() for labels, sims in
                      _knn_chunks(train_features, train_labels.long(), query_features, k, chunk_size, device)])


def knn_evaluate(train_features: torch.Tensor, train_labels: torch.Tensor, val_features: torch.Tensor,
                 val_labels: torch.Tensor, ks: Sequence[int] = KNN_KS, temperature: float = KNN_TEMPERATURE,
                 num_classes: Optional[int] = None, chunk_size: int = 256, device=None,
                 names: Tuple[str, str] = ('train features', 'val features')) -> Dict[int, Dict[str, float]]:
    """DINO's weighted kNN classifier on frozen features: ``{k: {'top1': %, 'top5': %}}`` on val for every k of
    ``ks`` (capped at the training size; a k capped to another's value is reported once, under the capped value).
    See :func:`knn_class_scores` for the votes and :func:`check_splits` for what is refused."""
    _check_knn_args(tuple(ks), temperature, chunk_size)
    num_classes = check_splits(train_features, train_labels, val_features, val_labels, num_classes, names)
    device = train_features.device if device is None else torch.device(device)
    used = sorted({min(k, train_features.shape[0]) for k in ks})
    hits = {k: torch.zeros(2, dtype=torch.long) for k in used}
    val_labels = val_labels.long()
    start = 0
    for labels, sims in _knn_chunks(train_features, train_labels.long(), val_features, used[-1], chunk_size, device):
        truth = val_labels[start:start + sims.shape[0]].to(sims.device)
        start += sims.shape[0]
        for k in used:
            top1, top5 = _hits(_votes(labels, sims, k, temperature, num_classes), truth, (1, 5), need_positive=True)
            hits[k] += torch.stack([top1.sum(), top5.sum()]).cpu()
    n = val_features.shape[0]
    return {k: {'top1': float(h[0]) * 100 / n, 'top5': float(h[1]) * 100 / n} for k, h in hits.items()}


# ----------------------------------------------------------------------------------------------- linear probe

@dataclass
class LinearProbeResult:
    """What :func:`linear_probe` found.

    Attributes:
        features: the feature choice of the chosen head; ``lr``: its learning rate.
        top1, top5: the chosen head's val accuracy in percent (NaN without val features).
        holdout_top1: every head's top-1 on the held-out part of the training features, by (features, lr), the
            only numbers the choice looked at.
        head: the chosen head as an ``nn.Linear`` on the raw features (standardisation folded in), on the CPU.
    """
    features: str
    lr: float
    top1: float
    top5: float
    holdout_top1: Dict[Tuple[str, float], float]
    head: nn.Linear

    def as_dict(self) -> dict:
        """Plain values for a JSON report."""
        return dict(features=self.features, lr=self.lr, top1=self.top1, top5=self.top5,
                    holdout_top1=[dict(features=f, lr=lr, top1=v) for (f, lr), v in self.holdout_top1.items()])


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, held-out indices): about ``fraction`` of every class held out, at least one sample of each
    class kept for fitting; the same for the same labels and seed."""
    generator = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    fit, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).view(-1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        take = min(len(idx) - 1, int(round(len(idx) * fraction)))
        held.append(idx[:take])
        fit.append(idx[take:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


class _Heads:
    """L linear heads on one feature choice as one (L, D, C) weight and an (L, C) bias, each with its own learning
    rate, trained by SGD with momentum or AdamW written out here (an optimiser of torch has one lr per tensor)."""

    def __init__(self, dim: int, num_classes: int, lrs: torch.Tensor, generator: torch.Generator, device):
        count = len(lrs)
        self.weight = (torch.randn(count, dim, num_classes, generator=generator) * 0.01).to(device).requires_grad_()
        self.bias = torch.zeros(count, num_classes, device=device, requires_grad=True)
        self.lrs = lrs.to(device)
        self.state: Dict[str, List[torch.Tensor]] = {}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight) + self.bias.unsqueeze(1)  # (L, B, C)

    @torch.no_grad()
    def step(self, scale: float, optimizer: str, momentum: float, weight_decay: float, t: int) -> None:
        for name, param in (('weight', self.weight), ('bias', self.bias)):
            lr = (self.lrs * scale).view(-1, *([1] * (param.dim() - 1)))
            decay = weight_decay if name == 'weight' else 0.0
            grad = param.grad
            if optimizer == 'sgd':
                if decay:
                    grad = grad + decay * param
                buf = self.state.setdefault(name, [torch.zeros_like(param)])[0]
                buf.mul_(momentum).add_(grad)
                param.sub_(lr * buf)
            else:  # adamw, betas (0.9, 0.999)
                m, v = self.state.setdefault(name, [torch.zeros_like(param), torch.zeros_like(param)])
                m.mul_(0.9).add_(grad, alpha=0.1)
                v.mul_(0.999).addcmul_(grad, grad, value=0.001)
                if decay:
                    param.mul_(1 - lr * decay)
                m_hat = m / (1 - 0.9 ** t)
                v_hat = v / (1 - 0.999 ** t)
                param.sub_(lr * m_hat / (v_hat.sqrt() + 1e-8))
            param.grad = None


def _train_heads(feats: Dict[str, torch.Tensor], labels: torch.Tensor, lrs: torch.Tensor, num_classes: int,
                 epochs: int, batch_size: int, optimizer: str, momentum: float, weight_decay: float,
                 generator: torch.Generator, device) -> Dict[str, _Heads]:
    heads = {name: _Heads(x.shape[1], num_classes, lrs, generator, device) for name, x in feats.items()}
    n = labels.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    t = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            y = labels[idx]
            scale = 0.5 * (1 + math.cos(math.pi * t / steps))  # cosine from lr to 0 over the run
            t += 1
            for name, head in heads.items():
                logits = head.logits(feats[name][idx])  # (L, B, C)
                count = logits.shape[0]
                # The sum over heads of each head's mean loss: every head gets its own gradient.
                loss = F.cross_entropy(logits.reshape(-1, num_classes), y.repeat(count), reduction='sum') / len(idx)
                loss.backward()
                head.step(scale, optimizer, momentum, weight_decay, t)
    return heads


@torch.no_grad()
def _score_heads(head: _Heads, x: torch.Tensor, labels: torch.Tensor, chunk: int = 4096
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per head: top-1 hits, top-5 hits and the summed cross-entropy on (x, labels)."""
    count = head.weight.shape[0]
    top1 = torch.zeros(count, dtype=torch.long, device=x.device)
    top5 = torch.zeros_like(top1)
    loss = torch.zeros(count, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        logits = head.logits(x[start:start + chunk])
        y = labels[start:start + chunk]
        for h in range(count):
            one, five = _hits(logits[h], y, (1, 5))
            top1[h] += one.sum()
            top5[h] += five.sum()
            loss[h] += F.cross_entropy(logits[h], y, reduction='sum').double()
    return top1.cpu(), top5.cpu(), loss.cpu()


def _as_choices(features, name: str) -> Dict[str, torch.Tensor]:
    if isinstance(features, Mapping):
        if not features:
            raise ConfigError(f'{name}: no feature choice given (an empty dict)')
        return dict(features)
    return {'features': features}


def linear_probe(train_features: Features, train_labels: torch.Tensor,
                 val_features: Optional[Features] = None, val_labels: Optional[torch.Tensor] = None, *,
                 lrs: Optional[Sequence[float]] = None, epochs: int = 10, batch_size: int = 256,
                 optimizer: str = 'sgd', momentum: float = 0.9, weight_decay: float = 0.0,
                 holdout_fraction: float = 0.1, standardize: bool = True, refit: bool = False, seed: int = 0,
                 num_classes: Optional[int] = None, device=None,
                 names: Tuple[str, str] = ('train features', 'val features')) -> LinearProbeResult:
    """DINOv2's linear probe: a linear head per (feature choice, learning rate), all trained at once on the frozen
    training features; the head with the best top-1 on a held-out part of the training features wins (ties: the
    lower held-out loss, then the earlier in the grid), and only that head is measured on val.

    Args:
        train_features, val_features: (N, D) tensors, or ``{choice name: (N, D_choice)}`` with the same names in
            both (e.g. from :func:`extract_feature_sets`) for heads on several feature choices.
        lrs: the learning-rate grid (default :data:`SGD_LRS` or :data:`ADAMW_LRS`).
        epochs, batch_size: a fixed schedule: ``epochs`` passes in shuffled batches, the lr decaying from its grid
            value to 0 on a cosine over all steps.
        optimizer: ``'sgd'`` (with ``momentum``) or ``'adamw'``; ``weight_decay`` applies to the weights only.
        holdout_fraction: the part of every class of the training split held out to choose the head (seeded).
        standardize: centre and scale every feature dimension by its mean and std on the fitting part (a BatchNorm
            without affine, frozen), so that one lr grid suits backbones of any feature scale.
        refit: train the chosen (features, lr) once more on all the training features before measuring it on val.
        seed: the split, the initialisation (normal, std 0.01) and the batch order: the same seed, the same result.
        num_classes: the class count (default: the largest label + 1).
        device: where the heads train (default: where the training features are).
        names: the splits' names in error messages (file paths, when the features come from files).
    """
    train_name, val_name = names
    train_choices = _as_choices(train_features, train_name)
    val_choices = None if val_features is None else _as_choices(val_features, val_name)
    if val_choices is not None and set(val_choices) != set(train_choices):
        raise ConfigError(f'{train_name} hold the feature choices {sorted(train_choices)} but {val_name} '
                          f'{sorted(val_choices)}: extract both splits with the same choices')
    if (val_features is None) != (val_labels is None):
        raise ConfigError('give val_features and val_labels together (or neither, to only choose the head)')
    for choice, feats in train_choices.items():
        split_names = tuple(n if len(train_choices) == 1 else f'{n} [{choice}]' for n in names)
        num_classes = check_splits(feats, train_labels, None if val_choices is None else val_choices[choice],
                                   val_labels, num_classes, split_names)
    if optimizer not in ('sgd', 'adamw'):
        raise ConfigError(f"optimizer={optimizer!r}: use 'sgd' or 'adamw'")
    lrs = tuple(SGD_LRS if optimizer == 'sgd' else ADAMW_LRS) if lrs is None else tuple(float(lr) for lr in lrs)
    if not lrs or any(not lr > 0 for lr in lrs):
        raise ConfigError(f'lrs={lrs!r}: give one or more positive learning rates')
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f'epochs={epochs!r} must be a positive integer')
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f'batch_size={batch_size!r} must be a positive integer')
    if not 0 < holdout_fraction < 1:
        raise ConfigError(f'holdout_fraction={holdout_fraction!r} must lie strictly between 0 and 1 (DINOv2 holds '
                          'out 10 % of the training set: 0.1)')
    device = next(iter(train_choices.values())).device if device is None else torch.device(device)
    train_labels = train_labels.long()
    fit_idx, held_idx = stratified_holdout(train_labels, holdout_fraction, seed)
    if len(held_idx) == 0:
        raise DataError(f'{train_name}: {len(train_labels)} samples are too few to hold out {holdout_fraction:.0%} '
                        'of any class for choosing the head: give more training samples or a larger '
                        'holdout_fraction')

    def prepared(indices, stats=None):
        """The chosen rows of every choice on the device, standardised with ``stats`` (default: their own)."""
        out, own_stats = {}, {}
        for choice, feats in train_choices.items():
            x = feats[indices].to(device).float()
            if stats is not None:
                mean, std = stats[choice]
            elif standardize:
                mean, std = x.mean(0), x.std(0, unbiased=False)
                std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant dimension: only centred
            else:
                mean, std = torch.zeros(x.shape[1], device=device), torch.ones(x.shape[1], device=device)
            own_stats[choice] = (mean, std)
            out[choice] = (x - mean) / std
        return out, own_stats

    generator = torch.Generator().manual_seed(seed)
    fit_x, stats = prepared(fit_idx)
    held_x, _ = prepared(held_idx, stats)
    lr_tensor = torch.tensor(lrs)
    train_args = dict(num_classes=num_classes, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                      momentum=momentum, weight_decay=weight_decay, device=device)
    heads = _train_heads(fit_x, train_labels[fit_idx].to(device), lr_tensor, generator=generator, **train_args)
    held_y = train_labels[held_idx].to(device)
    table, candidates = {}, []
    for order, (choice, head) in enumerate(heads.items()):
        top1, _, loss = _score_heads(head, held_x[choice], held_y)
        for i, lr in enumerate(lrs):
            table[(choice, lr)] = float(top1[i]) * 100 / len(held_idx)
            candidates.append((-int(top1[i]), float(loss[i]), order * len(lrs) + i, choice, i))
    _, _, _, best_choice, best_i = min(candidates)
    best_lr = lrs[best_i]
    weight = heads[best_choice].weight[best_i].detach()
    bias = heads[best_choice].bias[best_i].detach()
    mean, std = stats[best_choice]
    if refit:
        all_idx = torch.arange(len(train_labels))
        all_x, all_stats = prepared(all_idx)
        refit_gen = torch.Generator().manual_seed(seed + 1)
        head = _train_heads({best_choice: all_x[best_choice]}, train_labels.to(device), torch.tensor([best_lr]),
                            generator=refit_gen, **train_args)[best_choice]
        weight, bias = head.weight[0].detach(), head.bias[0].detach()
        mean, std = all_stats[best_choice]
    linear = nn.Linear(weight.shape[0], num_classes, device=device)
    with torch.no_grad():  # logits = ((x - mean) / std) @ W + b = x @ (W / std) + (b - (mean / std) @ W)
        linear.weight.copy_((weight / std.view(-1, 1)).T)
        linear.bias.copy_(bias - (mean / std) @ weight)
    top1 = top5 = float('nan')
    if val_choices is not None:
        with torch.no_grad():
            logits = torch.cat([linear(chunk.to(device).float()) for chunk in val_choices[best_choice].split(4096)])
        one, five = _hits(logits, val_labels.long().to(device), (1, 5))
        top1 = float(one.sum()) * 100 / len(val_labels)
        top5 = float(five.sum()) * 100 / len(val_labels)
    linear = linear.cpu()
    return LinearProbeResult(features=best_choice, lr=best_lr, top1=top1, top5=top5, holdout_top1=table, head=linear)


__all__ = ['KINDS', 'KNN_KS', 'KNN_TEMPERATURE', 'SGD_LRS', 'ADAMW_LRS', 'FEATURE_FORMAT', 'feature_name',
           'has_class_token', 'extract_features', 'extract_feature_sets', 'FeatureFile', 'save_features',
           'load_features', 'check_splits', 'knn_class_scores', 'knn_evaluate', 'LinearProbeResult',
           'stratified_holdout', 'linear_probe']
