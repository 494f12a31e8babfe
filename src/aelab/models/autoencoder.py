"""The autoencoder network: dense or convolutional, optionally linear or variational.

One class covers the lecture's family; variants are settings of
:class:`~aelab.config.ModelConfig`, not subclasses:

* undercomplete dense: encoder z = q(x) in R^k, decoder x' = p(z);
* convolutional (``arch="conv"``): any image size, padded to a multiple of 2**stages;
* linear (``linear=True``): no non-linearity, the PCA-equivalent autoencoder
  (Baldi & Hornik 1989);
* batch norm (``batch_norm=True``, dense): BatchNorm1d before each hidden activation;
* zero masking (``mask_zeros=True``): an input that is exactly 0 marks an absent object
  (zero-padded collider events); its reconstruction is set to 0, so only the objects that
  are present count in the loss and every reconstruction score;
* variational (``variational=True``): the encoder returns (mu, logvar); ``z`` is drawn
  with the reparameterisation trick only when ``sample=True`` (training); otherwise z = mu.

Denoising and sparsity are properties of the *loss*, not of the network (see
:mod:`aelab.losses` and :mod:`aelab.training`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..exceptions import ConfigError
from ..nn.backbones import build_decoder, build_encoder

# logvar is clamped so that exp(logvar) neither underflows to 0 nor overflows.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass
class AEOutput:
    """What a forward pass returns. ``mu``/``logvar`` are None for non-variational models."""

    x_hat: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None


def activation_class(cfg: ModelConfig):
    if cfg.linear:
        return nn.Identity
    try:
        return _ACTIVATIONS[cfg.activation]
    except KeyError:
        raise ConfigError(f"activation={cfg.activation!r} is not known; expected one of {sorted(_ACTIVATIONS)}.") from None


def mlp(sizes, activation, last_activation: bool, batch_norm: bool = False) -> nn.Sequential:
    """Linear layers with an activation (after a BatchNorm1d when ``batch_norm``) between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b), activation()] if batch_norm else [activation()]
    return nn.Sequential(*layers)


class AutoencoderNet(nn.Module):
    """Encoder/decoder pair built from a :class:`ModelConfig`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        act = activation_class(cfg)
        k = cfg.latent_dim
        code = 2 * k if cfg.variational else k
        if cfg.arch == "dense":
            (d,) = cfg.input_shape
            widths = [d, *cfg.hidden]
            bn = bool(cfg.batch_norm)
            self.encoder = nn.Sequential(nn.Flatten(), mlp([*widths, code], act, last_activation=False, batch_norm=bn))
            self.decoder = mlp([k, *widths[::-1]], act, last_activation=False, batch_norm=bn)
        elif cfg.arch == "conv":
            c, h, w = cfg.input_shape
            s = 2 ** len(cfg.channels)
            #: (H, W) the encoder takes: the input zero-padded at the end to a multiple of 2**stages
            self.pad_hw = (math.ceil(h / s) * s, math.ceil(w / s) * s)
            self._feat = (cfg.channels[-1], self.pad_hw[0] // s, self.pad_hw[1] // s)
            n_feat = math.prod(self._feat)
            self.encoder = nn.Sequential(
                build_encoder(cfg.backbone, c, cfg.channels, act), nn.Flatten(), nn.Linear(n_feat, code)
            )
            self.decoder = nn.Sequential(
                nn.Linear(k, n_feat), act(), nn.Unflatten(1, self._feat),
                build_decoder(cfg.backbone, cfg.channels, c, act),
            )
        else:
            raise ConfigError(f"arch={cfg.arch!r} is not known; expected 'dense' or 'conv'.")
        if cfg.output not in ("sigmoid", "identity"):
            raise ConfigError(f"output={cfg.output!r} is not known; expected 'sigmoid' or 'identity'.")

    # -- the two halves -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (mu, logvar); logvar is None for a deterministic encoder."""
        if self.cfg.arch == "conv":
            ph, pw = self.pad_hw
            x = nn.functional.pad(x, (0, pw - x.shape[-1], 0, ph - x.shape[-2]))
        return self.split_code(self.encoder(x))

    def split_code(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) from the encoder's output ``h`` (logvar clamped; None for a deterministic encoder)."""
        if not self.cfg.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """A padded (..., H, W) tensor of a convolutional model back to the input's size (others: as is)."""
        if self.cfg.arch == "conv":
            _, h, w = self.cfg.input_shape
            x = x[..., :h, :w]
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.crop(self.decoder(z))
        return torch.sigmoid(x) if self.cfg.output == "sigmoid" else x

    def forward(self, x: torch.Tensor, sample: bool = False) -> AEOutput:
        mu, logvar = self.encode(x)
        z = mu
        if sample and logvar is not None:
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self._output(x, z, mu, logvar, self.decode(z))

    def _output(self, x, z, mu, logvar, x_hat, absent=None) -> AEOutput:
        if self.cfg.mask_zeros:  # absent (zero-padded) inputs are given back as they are: no error
            x_hat = torch.where(x == 0 if absent is None else absent, x, x_hat)
        return AEOutput(x_hat, z, mu if logvar is not None else None, logvar)

    def assemble(self, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor, absent=None) -> AEOutput:
        """The :class:`AEOutput` of a pass computed outside this module (the fixed-point emulation, hls4ml's C
        model), as :meth:`forward` (``sample=False``) makes it: ``x`` the input, ``h`` the encoder's output,
        ``y`` the decoder's output with the output activation applied (still padded for conv models);
        ``absent``: the inputs ``mask_zeros`` treats as absent (default: those exactly 0 in ``x``)."""
        mu, logvar = self.split_code(h)
        return self._output(x, mu, mu, logvar, self.crop(y), absent)
