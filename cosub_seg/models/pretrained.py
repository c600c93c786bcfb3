"""Starting a timm network from a weights file: the one loader of both stages' pretrained weights.

The file is read without running code from it (:func:`cosub_seg.checkpoint.load_checkpoint_file`), put under the
network's names by the family's own timm filter (:func:`cosub_seg.checkpoint.timm_state_dict`: position embeddings
resampled bicubically to the network's grid, DeiT III's ``gamma_1`` names, a refused patch size), then loaded with
everything that does not fit either said or refused:

* the classifier: kept when its shape fits, re-initialised when the class count differs (``head='replace'``, the
  fine-tuning case: 21k -> 1k, ImageNet -> CIFAR-100), or absent from the network (``num_classes=0``, segmentation);
* any other tensor whose shape does not fit: refused, naming the key and both shapes;
* tensors of the network the file lacks: loaded nothing, said with a warning (they stay randomly initialised).
"""
from dataclasses import dataclass, field
from typing import List

import torch.nn as nn
from mmengine.logging import print_log

from ..checkpoint import extract_state_dict, load_checkpoint_file, timm_state_dict
from ..errors import ConfigError


@dataclass
class LoadedWeights:
    """What :func:`load_timm_weights` did: tensors loaded, file tensors not used, network tensors not in the file,
    and the classifier tensors re-initialised because the class count differs."""
    loaded: List[str] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    replaced_head: List[str] = field(default_factory=list)


def classifier_names(model: nn.Module) -> List[str]:
    """The state-dict names of a timm network's classifier (``head.weight``, ``head.fc.bias``...), from
    ``get_classifier()``; none for a network without one."""
    get = getattr(model, 'get_classifier', None)
    head = get() if get is not None else None
    if not isinstance(head, nn.Module):
        return []
    ids = {id(t) for t in head.state_dict(keep_vars=True).values()}
    return [name for name, t in model.state_dict(keep_vars=True).items() if id(t) in ids]


def load_timm_weights(model: nn.Module, path: str, head: str = 'replace') -> LoadedWeights:
    """Loads the weights file ``path`` into the timm network ``model`` (see the module's docstring).

    Args:
        model: a timm network (the classifier's ``backbone``, the segmentation backbone's ``model``).
        path: a checkpoint of ``tools/pretrain.py`` / ``tools/finetune.py`` (its EMA weights when it kept an EMA), a
            timm state dict, a DeiT III release (``{'model': ...}``) or a ``.safetensors`` file.
        head: 'replace' re-initialises a classifier whose class count differs from the file's; 'strict' refuses it.
    """
    if head not in ('replace', 'strict'):
        raise ConfigError(f"head must be 'replace' or 'strict', got {head!r}")
    state = timm_state_dict(extract_state_dict(load_checkpoint_file(path), path), model)
    own = model.state_dict()
    report = LoadedWeights(unused=sorted(k for k in state if k not in own))
    state = {k: v for k, v in state.items() if k in own}
    heads = set(classifier_names(model))
    mismatched = {k: v for k, v in state.items() if v.shape != own[k].shape}
    report.replaced_head = sorted(k for k in mismatched if k in heads)
    if report.replaced_head and head == 'strict':
        raise ConfigError(f'{path}: the classifier has {tuple(mismatched[report.replaced_head[0]].shape)} in the file, '
                          f'{tuple(own[report.replaced_head[0]].shape)} here: set num_classes to the file\'s class '
                          'count, or let the classifier be replaced')
    others = [f'{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} here' for k, v in mismatched.items()
              if k not in heads]
    if others:
        raise ConfigError(f'{path} does not fit {type(model).__name__}: ' + '; '.join(others[:5]) +
                          '. Check the architecture (model.arch, model_kwargs) against the checkpoint\'s.')
    state = {k: v for k, v in state.items() if k not in mismatched}
    report.missing = sorted(set(own) - set(state) - set(report.replaced_head))
    report.loaded = sorted(state)
    model.load_state_dict(state, strict=False)
    print_log(f'loaded {len(state)} tensors from {path}; not used (classifier, pruned layers): '
              f'{report.unused if report.unused else "none"}; missing: {report.missing if report.missing else "none"}',
              logger='current')
    if report.replaced_head:
        shape = tuple(mismatched[report.replaced_head[0]].shape)
        print_log(f'the classifier of {path} ({shape[0]} classes) is replaced by a new one with '
                  f'{tuple(own[report.replaced_head[0]].shape)[0]} classes, initialised as timm initialises it',
                  logger='current')
    if report.missing:
        print_log(f'{len(report.missing)} weights of the network were not in {path} and stay randomly initialised: '
                  f'{report.missing[:10]}', logger='current', level=30)
    return report


__all__ = ['LoadedWeights', 'classifier_names', 'load_timm_weights']
