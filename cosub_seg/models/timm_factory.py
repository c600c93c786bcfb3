"""Building timm models by name, with stochastic depth wired in and errors a user can act on."""
import difflib
from typing import Optional

import timm
import torch
import torch.nn as nn
from timm.models import VisionTransformer, vision_transformer

from ..cosub.stochastic_depth import StochasticDepthConfig
from ..errors import ConfigError, ConfigTypeError
from .stochastic_depth import configure_stochastic_depth, vit_block_fn


def _check_name(model_name: str) -> None:
    if model_name not in timm.list_models():
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f' Close matches: {", ".join(close)}.' if close else ''
        raise ConfigError(f'unknown timm model name {model_name!r}.{hint} '
                          f'List the names with `python -c "import timm; print(timm.list_models(\'*vit*\'))"`.')


def _create(model_name: str, **kwargs) -> nn.Module:
    try:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    except TypeError as err:
        raise ConfigTypeError(
            f'timm model {model_name!r} does not accept the arguments {sorted(kwargs)}: {err}') from err


def model_module(arch: str) -> str:
    """The timm module that defines ``arch`` ('deit', 'swin_transformer', ...); '' for an unknown name."""
    if not timm.is_model(arch):
        return ''
    return timm.models.model_entrypoint(arch).__module__.rsplit('.', 1)[-1]


def builds_standard_vit_blocks(model_name: str, **kwargs) -> bool:
    """Whether ``model_name`` is a timm ``VisionTransformer`` made of timm's standard ``Block`` (``block_fn``'s
    default), so that ``block_fn`` may build ours instead; variants with blocks of their own (``ResPostBlock``,
    ``ParallelScalingBlock``...) must keep them.

    Checked on a one-block copy (a block's class does not depend on the depth) built on the CPU, with the random
    state restored so that the model built next draws the weights it would draw without the probe; a ViT-H/14 block
    is about 20 M parameters. Not on the meta device under ``with torch.device('meta')``: in the long test session that
    context manager's dispatch was where the process died of a segmentation fault, four times of five."""
    if 'block_fn' in kwargs or model_module(model_name) not in ('vision_transformer', 'deit'):
        return False
    with torch.random.fork_rng(devices=[]):
        probe = _create(model_name, **dict(kwargs, depth=1))
    blocks = list(getattr(probe, 'blocks', []))
    return isinstance(probe, VisionTransformer) and bool(blocks) and \
        all(type(block) is vision_transformer.Block for block in blocks)


def create_timm_model(model_name: str, stochastic_depth: Optional[StochasticDepthConfig] = None,
                      **kwargs) -> nn.Module:
    """``timm.create_model(model_name, pretrained=False, **kwargs)``, naming close matches for an unknown name.

    With ``stochastic_depth``, every residual branch gets the module it configures and every known block skips the
    rows it drops (:mod:`cosub_seg.models.stochastic_depth`): ViTs are built with our block (``block_fn``), other
    families have their blocks switched after timm built them. Weights are never downloaded here: pretrained
    weights come from a checkpoint file through ``init_cfg``.
    """
    _check_name(model_name)
    if stochastic_depth is None:
        return _create(model_name, **kwargs)
    kwargs = dict(kwargs, drop_path_rate=stochastic_depth.rate)
    if builds_standard_vit_blocks(model_name, **kwargs):
        kwargs['block_fn'] = vit_block_fn(stochastic_depth)
    model = _create(model_name, **kwargs)
    configure_stochastic_depth(model, stochastic_depth)
    return model


__all__ = ['create_timm_model', 'builds_standard_vit_blocks', 'model_module']
