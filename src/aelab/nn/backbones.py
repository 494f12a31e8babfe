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
"""

from __future__ import annotations

from torch import nn

from ..exceptions import ConfigError

BACKBONES = ("plain",)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def _plain_encoder(in_channels, channels, activation):
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in channels:
        layers += [_conv(cin, cout), activation(), nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers)


def _plain_decoder(channels, out_channels, activation):
    layers: list[nn.Module] = []
    rev = list(channels)[::-1]
    for i, cin in enumerate(rev):
        cout = rev[i + 1] if i + 1 < len(rev) else rev[-1]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, cout), activation()]
    layers.append(_conv(rev[-1], out_channels))
    return nn.Sequential(*layers)


_ENCODERS = {"plain": _plain_encoder}
_DECODERS = {"plain": _plain_decoder}


def _check(backbone: str) -> None:
    if backbone not in _ENCODERS:
        raise ConfigError(
            f"backbone={backbone!r} is not known; expected one of {sorted(_ENCODERS)}."
        )


def build_encoder(backbone: str, in_channels: int, channels, activation=nn.ReLU) -> nn.Module:
    _check(backbone)
    return _ENCODERS[backbone](int(in_channels), tuple(int(c) for c in channels), activation)


def build_decoder(backbone: str, channels, out_channels: int, activation=nn.ReLU) -> nn.Module:
    _check(backbone)
    return _DECODERS[backbone](tuple(int(c) for c in channels), int(out_channels), activation)
