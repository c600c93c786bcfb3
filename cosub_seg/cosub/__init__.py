"""The cosub method in plain PyTorch (no MMEngine): the loss and stochastic depth that skips the rows it drops."""
from .loss import CosubLoss, cosub_loss, cosub_pixel_peer_loss
from .stochastic_depth import StochasticDepth, StochasticDepthConfig

__all__ = ['CosubLoss', 'cosub_loss', 'cosub_pixel_peer_loss', 'StochasticDepth', 'StochasticDepthConfig']
