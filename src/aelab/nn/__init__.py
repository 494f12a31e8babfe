"""Building blocks for convolutional autoencoders, and their cost."""

from .backbones import BACKBONES, build_decoder, build_encoder

__all__ = ["BACKBONES", "build_encoder", "build_decoder"]
