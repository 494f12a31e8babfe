"""Building blocks for convolutional autoencoders, and their cost.

Blocks (:mod:`aelab.nn.blocks`) go from LeNet to DenseNet and U-Net; backbones
(:mod:`aelab.nn.backbones`) stack them into the encoders and decoders of the
convolutional autoencoders; :func:`cost` counts parameters, MACs, activation memory
and latency of any model.
"""

from .backbones import BACKBONES, build_decoder, build_encoder, inception_split
from .blocks import (
    BottleneckBypassWarning,
    ConvAct,
    DenseBlock,
    InceptionModule,
    LeNetStack,
    ResidualBlock,
    Transition,
    UNet,
    VGGStack,
    check_anomaly_use,
    make_pool,
    pad_to_multiple,
)
from .cost import cost, format_cost

__all__ = [
    "BACKBONES",
    "build_encoder",
    "build_decoder",
    "inception_split",
    "ConvAct",
    "LeNetStack",
    "VGGStack",
    "ResidualBlock",
    "InceptionModule",
    "DenseBlock",
    "Transition",
    "UNet",
    "BottleneckBypassWarning",
    "check_anomaly_use",
    "make_pool",
    "pad_to_multiple",
    "cost",
    "format_cost",
]
