"""The cosub method in plain PyTorch (no MMEngine)."""
from .loss import CosubLoss, cosub_loss, cosub_pixel_peer_loss

__all__ = ['CosubLoss', 'cosub_loss', 'cosub_pixel_peer_loss']
