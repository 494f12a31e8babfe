"""Convolutional encoder and decoder stacks used by the convolutional autoencoders.

Contract used by :mod:`aelab.models`:

* ``build_encoder(backbone, in_channels, channels, activation)`` returns a module
  mapping ``(n, in_channels, H, W)`` to ``(n, channels[-1], H / 2**s, W / 2**s)``
  with ``s = len(channels)`` stages, each halving the spatial size exactly (the
  caller pads H and W to a multiple of ``2**s``).
* ``build_decoder(backbone, channels, out_channels, activation)`` mirrors it: it maps
  ``(n, channels[-1], h, w)`` to ``(n, out_channels, h * 2**s, w * 2**s)``, upsampling
  (nearest neighbour) followed by convolutions, never a transposed convolution, so the
  decoders stay convertible by FPGA toolchains such as hls4ml. The last layer has no
  activation (the model adds its output activation).
* ``activation`` is a module class (``nn.ReLU``) or ``nn.Identity`` for linear models.

Backbones (``BACKBONES``); stage ``i`` maps ``channels[i-1]`` to ``channels[i]`` channels:

=============  =======================================================================
``plain``      3x3 conv + activation, 2x2 pool (LeNet-style, :class:`LeNetStack`)
``vgg``        two 3x3 conv + activation, 2x2 pool (:class:`VGGStack`)
``resnet``     one :class:`ResidualBlock`, stride 2 going down (projection shortcut)
``inception``  one :class:`InceptionModule` (with 1x1 reductions), 2x2 pool; the stage's
               channels are split 1/4, 1/2, 1/8, 1/8 over the 1x1, 3x3, 5x5 and pool
               branches as in GoogLeNet (3a), so each stage needs at least 4 channels
``dense``      :class:`DenseBlock` of 3 layers with growth ``max(1, c // 4)``, then a
               :class:`Transition` (1x1 conv, 2x2 average pool)
=============  =======================================================================

Convolution weights get He (Kaiming) normal initialisation with the gain of the
activation (He et al. 2015; ``nn.init.calculate_gain``) and zero biases: PyTorch's
default initialisation shrinks the signal through the many narrow branches of the
inception and dense backbones, which then barely train in the first epochs.

Decoder stages are nearest-neighbour upsampling followed by the same block at stride 1
without pooling. With ``activation=nn.Identity`` every pooling is an average pooling, so
the encoder and decoder are affine maps (max pooling would not be): a truly linear
autoencoder.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..exceptions import ConfigError
from .blocks import (
    Activation,
    DenseBlock,
    InceptionModule,
    LeNetStack,
    ResidualBlock,
    Transition,
    VGGStack,
    make_pool,
)

BACKBONES = ("plain", "vgg", "resnet", "inception", "dense")

DENSE_LAYERS = 3  # layers per dense block in the "dense" backbone


def inception_split(channels: int) -> tuple[int, int, int, int]:
    """Split a stage's channels over the inception branches as GoogLeNet (3a) does.

    Returns ``(c1, c3, c5, cpool)``, about 1/4, 1/2, 1/8, 1/8 of ``channels``, each at
    least 1 and summing to ``channels``.
    """
    if channels < 4:
        raise ConfigError(
            f"the inception backbone needs at least 4 channels per stage (one per "
            f"branch); got {channels}. Use wider channels or another backbone."
        )
    c1, c5 = max(1, channels // 4), max(1, channels // 8)
    cpool = c5
    return c1, channels - c1 - c5 - cpool, c5, cpool


def _plain(cin, cout, activation, pool, down):
    return LeNetStack(cin, (cout,), 3, activation=activation, pool=pool if down else None)


def _vgg(cin, cout, activation, pool, down):
    return VGGStack(cin, (cout,), 2, activation, pool=pool if down else None)


def _resnet(cin, cout, activation, pool, down):
    return ResidualBlock(cin, cout, stride=2 if down else 1, activation=activation)


def _inception(cin, cout, activation, pool, down):
    block = InceptionModule(cin, *inception_split(cout), activation=activation, pool=pool)
    return nn.Sequential(block, make_pool(pool, 2)) if down else block


def _dense(cin, cout, activation, pool, down):
    block = DenseBlock(cin, max(1, cout // 4), DENSE_LAYERS, activation)
    return nn.Sequential(block, Transition(block.out_channels, cout, activation,
                                           pool="avg" if down else None))


# One stage per call: it halves H and W when ``down``, else keeps them. ``pool`` is
# "avg" for linear models, else "max".
_STAGES = {"plain": _plain, "vgg": _vgg, "resnet": _resnet, "inception": _inception, "dense": _dense}


def _pool(activation: Activation) -> str:
    linear = isinstance(activation, type) and issubclass(activation, nn.Identity)
    return "avg" if linear else "max"


_GAINS = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
          nn.SELU: "selu", nn.Identity: "linear"}


def _init(module: nn.Module, activation: Activation) -> nn.Module:
    """He-normal conv weights with the activation's gain (ReLU's if unknown), zero biases."""
    gain = nn.init.calculate_gain(_GAINS.get(activation, "relu"))
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, gain / fan_in ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _check(backbone: str, channels: tuple[int, ...], activation) -> None:
    if backbone not in _STAGES:
        raise ConfigError(
            f"backbone={backbone!r} is not known; expected one of {list(BACKBONES)}."
        )
    if not channels or min(channels) < 1:
        raise ConfigError(
            f"channels must be a non-empty sequence of positive ints; got {channels!r}."
        )
    if isinstance(activation, nn.Module) or not callable(activation):
        raise ConfigError(
            f"activation must be a module class such as nn.ReLU (not an instance); "
            f"got {activation!r}."
        )


def build_encoder(backbone: str, in_channels: int, channels: Sequence[int],
                  activation: Activation = nn.ReLU) -> nn.Module:
    """Build the encoder: ``len(channels)`` stages, each halving H and W.

    Parameters
    ----------
    backbone : str
        One of :data:`BACKBONES`.
    in_channels : int
        Channels of the (padded) input image.
    channels : sequence of int
        Output channels of each stage.
    activation : class, default=nn.ReLU
        Activation module class; ``nn.Identity`` makes the encoder affine.

    Returns
    -------
    nn.Sequential
        Maps ``(n, in_channels, H, W)`` to ``(n, channels[-1], H / 2**s, W / 2**s)``.
    """
    channels = tuple(int(c) for c in channels)
    _check(backbone, channels, activation)
    ins = (int(in_channels),) + channels[:-1]
    encoder = nn.Sequential(*(_STAGES[backbone](cin, cout, activation, _pool(activation), True)
                              for cin, cout in zip(ins, channels)))
    return _init(encoder, activation)


def build_decoder(backbone: str, channels: Sequence[int], out_channels: int,
                  activation: Activation = nn.ReLU) -> nn.Module:
    """Build the decoder mirroring :func:`build_encoder`.

    Stage ``i`` upsamples by 2 (nearest neighbour) and maps ``channels[-1-i]`` to
    ``channels[-2-i]`` channels (the last stage keeps ``channels[0]``); a final 3x3
    convolution without activation gives ``out_channels``.

    Parameters
    ----------
    backbone : str
        One of :data:`BACKBONES`.
    channels : sequence of int
        The encoder's channels, in encoder order.
    out_channels : int
        Channels of the reconstructed image.
    activation : class, default=nn.ReLU
        Activation module class; ``nn.Identity`` makes the decoder affine.

    Returns
    -------
    nn.Sequential
        Maps ``(n, channels[-1], h, w)`` to ``(n, out_channels, h * 2**s, w * 2**s)``.
    """
    channels = tuple(int(c) for c in channels)
    _check(backbone, channels, activation)
    rev = channels[::-1]
    outs = rev[1:] + rev[-1:]
    stages: list[nn.Module] = [
        nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                      _STAGES[backbone](cin, cout, activation, _pool(activation), False))
        for cin, cout in zip(rev, outs)
    ]
    stages.append(nn.Conv2d(channels[0], int(out_channels), 3, padding=1))
    return _init(nn.Sequential(*stages), activation)
