"""Pure ``nn.Module`` networks, rebuilt from a :class:`~aelab.config.ModelConfig`."""

from ..config import ModelConfig
from .autoencoder import AEOutput, AutoencoderNet
from .pca import PCANet


def build_model(cfg: ModelConfig):
    """Build the network that ``cfg`` describes (used by fit and by load)."""
    return PCANet(cfg) if cfg.kind == "pca" else AutoencoderNet(cfg)


__all__ = ["AEOutput", "AutoencoderNet", "PCANet", "build_model", "ModelConfig"]
