"""Building timm models by name, with errors a user can act on."""
import difflib

import timm
import torch.nn as nn

from ..errors import ConfigError, ConfigTypeError


def create_timm_model(model_name: str, **kwargs) -> nn.Module:
    """``timm.create_model(model_name, pretrained=False, **kwargs)``, naming close matches for an unknown name.

    Weights are never downloaded here: pretrained weights come from a checkpoint file through ``init_cfg``.
    """
    if model_name not in timm.list_models():
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f' Close matches: {", ".join(close)}.' if close else ''
        raise ConfigError(f'unknown timm model name {model_name!r}.{hint} '
                          f'List the names with `python -c "import timm; print(timm.list_models(\'*vit*\'))"`.')
    try:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    except TypeError as err:
        raise ConfigTypeError(
            f'timm model {model_name!r} does not accept the arguments {sorted(kwargs)}: {err}') from err
