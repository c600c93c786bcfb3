"""Building timm models by name, with errors a user can act on."""
import difflib

import timm
from timm.layers import DropPath
import torch.nn as nn


def create_timm_model(model_name: str, **kwargs) -> nn.Module:
    """``timm.create_model(model_name, pretrained=False, **kwargs)``, naming close matches for an unknown name.

    Weights are never downloaded here: pretrained weights come from a checkpoint file through ``init_cfg``.
    """
    if model_name not in timm.list_models():
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f' Close matches: {", ".join(close)}.' if close else ''
        raise ValueError(f'unknown timm model name {model_name!r}.{hint} '
                         f'List the names with `python -c "import timm; print(timm.list_models(\'*vit*\'))"`.')
    try:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    except TypeError as err:
        raise TypeError(f'timm model {model_name!r} does not accept the arguments {sorted(kwargs)}: {err}') from err


DROP_PATH_SCHEDULES = ('linear', 'constant')


def stochastic_depth_modules(model: nn.Module) -> list:
    """``(parent, attribute name)`` of every stochastic-depth slot of a timm model, in order.

    timm names them ``drop_path``, ``drop_path1``, ``drop_path2``... in every family used here (ViT/DeiT III, Swin,
    ConvNeXt, RegNet, PiT, XCiT); a slot whose rate was 0 holds ``nn.Identity`` instead of ``DropPath``.
    """
    slots = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if name.startswith('drop_path') and isinstance(child, (DropPath, nn.Identity)):
                slots.append((parent, name))
    return slots


def set_drop_path_schedule(model: nn.Module, rate: float, schedule: str) -> None:
    """Sets every stochastic-depth rate: 'linear' keeps timm's schedule (rising from 0 to ``rate`` over depth),
    'constant' uses ``rate`` in every residual branch, as the cosub authors' code does (``dpr_constant=True``)."""
    if schedule not in DROP_PATH_SCHEDULES:
        raise ValueError(f'drop_path_schedule must be one of {DROP_PATH_SCHEDULES}, got {schedule!r}')
    if schedule == 'linear':
        return
    slots = stochastic_depth_modules(model)
    if not slots:
        raise ValueError(f'{type(model).__name__} has no drop_path modules: a constant schedule cannot be applied')
    for parent, name in slots:
        setattr(parent, name, DropPath(rate) if rate > 0 else nn.Identity())
