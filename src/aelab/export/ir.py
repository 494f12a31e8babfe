"""The network as firmware sees it: a small typed graph, made once from a fitted model.

:func:`graph` walks the fitted network and turns each PyTorch module into one layer dataclass
(:class:`Dense`, :class:`Conv`, :class:`Pool`, :class:`Upsample`, :class:`Flatten`,
:class:`Unflatten`, :class:`Activation`), batch norm folded into the layer before it, in float64.
The converters sit in one registry by module type (:func:`converts`), as hls4ml's own frontends
do; the consumers (the fixed-point emulation, the bit-width scan, the adder-cost estimate,
fine-tuning and the hls4ml writer) dispatch on the layer classes in their own registries
(``functools.singledispatch``), so a new layer kind is one dataclass plus one handler in each.

A :class:`Graph` also says what the firmware outputs (``target``: the reconstruction, or a VAE
encoder's mean ``mu``), how its input is laid out (zero-padded to ``pad_hw``; inputs that are
exactly 0 masked for ``mask_zeros`` models) and how the score crops the output back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError
from .fixed import FixedPoint

__all__ = ["Layer", "Dense", "Conv", "Pool", "Upsample", "Flatten", "Unflatten", "Activation", "Graph", "graph",
           "unsupported", "fitted_state", "network_input", "firmware_score", "converts"]


# ------------------------------------------------------------------ layers
class Layer:
    """A layer of the firmware graph. ``weighted`` layers hold float64 ``W`` and ``b``."""

    weighted = False


@dataclass
class Dense(Layer):
    W: torch.Tensor  # (out, in)
    b: torch.Tensor
    source: str = ""           # the module it came from (``model.get_submodule(source)``)
    folded: str | None = None  # the batch norm folded into it
    weighted = True


@dataclass
class Conv(Layer):
    W: torch.Tensor  # (out, in, kh, kw), stride 1, zero padding
    b: torch.Tensor
    padding: tuple = (0, 0)
    source: str = ""
    folded: str | None = None
    weighted = True


@dataclass
class Pool(Layer):
    kind: str  # "max" | "avg"
    k: int


@dataclass
class Upsample(Layer):
    scale: int  # nearest


@dataclass
class Flatten(Layer):
    pass


@dataclass
class Unflatten(Layer):
    shape: tuple  # (C, H, W)


@dataclass
class Activation(Layer):
    kind: str  # "relu" | "leaky_relu" | "sigmoid" | "tanh"
    slope: float | None = None


@dataclass
class Graph:
    """The firmware network and its input and output conventions."""

    layers: list
    target: str                    # "reconstruction" | "mu"
    pad_hw: tuple | None = None    # conv models: the (H, W) the input is zero-padded to
    crop: tuple | None = None      # conv models: the (C, H, W) the score crops the output to
    mask_zeros: bool = False       # inputs that are exactly 0 give no error
    latent_dim: int = 0
    skipped: list = field(default_factory=list)  # each module not taken, as "name (Type): why"
    code_at: int = 0               # the code (the encoder's output) is the output of layers[code_at - 1]

    @property
    def weighted(self) -> list:
        return [layer for layer in self.layers if layer.weighted]

    def with_weights(self, weights: list) -> Graph:
        """The same graph with new (W, b) pairs for its weighted layers, in order."""
        it = iter(weights)
        return replace(self, layers=[replace(layer, W=next(it), b=next(it)) if layer.weighted else layer
                                     for layer in self.layers])

    def to_tuples(self) -> list[tuple]:
        """The layers as the tuples of aelab 0.2 (``("dense", W, b)``, ``("conv", W, b, padding)``, ...)."""
        out = []
        for layer in self.layers:
            if isinstance(layer, Dense):
                out.append(("dense", layer.W, layer.b))
            elif isinstance(layer, Conv):
                out.append(("conv", layer.W, layer.b, layer.padding))
            elif isinstance(layer, Pool):
                out.append((f"{layer.kind}pool", layer.k))
            elif isinstance(layer, Upsample):
                out.append(("upsample", layer.scale))
            elif isinstance(layer, Flatten):
                out.append(("flatten",))
            elif isinstance(layer, Unflatten):
                out.append(("unflatten", layer.shape))
            else:
                out.append((layer.kind, layer.slope) if layer.kind == "leaky_relu" else (layer.kind,))
        return out


# ------------------------------------------------------------------ converters: nn.Module -> layers
_CONVERTERS: dict[type, Callable] = {}


def converts(*types):
    """Register ``fn(module, name, layers) -> None | why-not`` as the converter of these module types."""
    def deco(fn):
        for t in types:
            _CONVERTERS[t] = fn
        return fn
    return deco


@converts(nn.Flatten, nn.Identity, nn.Dropout)
def _skip(m, name, layers):
    if isinstance(m, nn.Flatten) and any(isinstance(layer, Conv) for layer in layers):
        layers.append(Flatten())


@converts(nn.Linear)
def _linear(m, name, layers):
    layers.append(Dense(m.weight.detach().double().cpu(), m.bias.detach().double().cpu(), source=name))


@converts(nn.Conv2d)
def _conv(m, name, layers):
    pad = m.padding if isinstance(m.padding, tuple) else None
    if type(m) is not nn.Conv2d or m.stride != (1, 1) or m.dilation != (1, 1) or m.groups != 1 or pad is None \
            or m.padding_mode != "zeros":
        return (f"stride {m.stride}, dilation {m.dilation}, groups {m.groups}, padding {m.padding!r} "
                f"({m.padding_mode}); exported convolutions have stride 1, no dilation, one group and zero padding")
    b = m.bias.detach().double().cpu() if m.bias is not None else torch.zeros(m.out_channels, dtype=torch.float64)
    layers.append(Conv(m.weight.detach().double().cpu(), b, tuple(pad), source=name))


@converts(nn.BatchNorm1d, nn.BatchNorm2d)
def _batch_norm(m, name, layers):
    if not layers or not layers[-1].weighted:
        return "batch norm that does not follow a Linear or Conv2d layer"
    if is_identity(m):  # left by fine-tuning: the layer before it holds the folded weights
        layers[-1] = replace(layers[-1], folded=name)
        return None
    s = m.weight.detach().double().cpu() / torch.sqrt(m.running_var.double().cpu() + m.eps)
    last = layers[-1]
    mean, beta = m.running_mean.double().cpu(), m.bias.detach().double().cpu()
    layers[-1] = replace(last, W=last.W * s.view(-1, *[1] * (last.W.dim() - 1)), b=(last.b - mean) * s + beta,
                         folded=name)
    return None


@converts(nn.MaxPool2d, nn.AvgPool2d)
def _pool(m, name, layers):
    k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
    if m.kernel_size not in (k, (k, k)) or m.stride not in (k, (k, k)) or m.padding not in (0, (0, 0)):
        return (f"kernel {m.kernel_size}, stride {m.stride}, padding {m.padding}; exported pooling has equal "
                "kernel and stride and no padding")
    layers.append(Pool("max" if isinstance(m, nn.MaxPool2d) else "avg", int(k)))
    return None


@converts(nn.Upsample)
def _upsample(m, name, layers):
    if m.mode != "nearest" or not float(m.scale_factor or 0).is_integer():
        return "not a nearest upsampling by a whole factor"
    layers.append(Upsample(int(m.scale_factor)))
    return None


@converts(nn.Unflatten)
def _unflatten(m, name, layers):
    layers.append(Unflatten(tuple(int(v) for v in m.unflattened_size)))


@converts(nn.ReLU, nn.Sigmoid, nn.Tanh)
def _activation(m, name, layers):
    layers.append(Activation({nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}[type(m)]))


@converts(nn.LeakyReLU)
def _leaky(m, name, layers):
    layers.append(Activation("leaky_relu", float(m.negative_slope)))


def is_identity(bn: nn.Module) -> bool:
    """A batch norm that fine-tuning left as the identity (its layer before holds the folded weights)."""
    return bool((bn.running_mean == 0).all() and (bn.bias == 0).all()
                and (bn.weight == 1).all() and (bn.running_var == 1 - bn.eps).all())


def _walk_module(m: nn.Module, name: str, layers: list, skipped: list) -> None:
    if list(m.children()):
        if type(m).forward is not nn.Sequential.forward:
            skipped.append(f"{name} ({type(m).__name__}): its forward is not a plain sequence of layers (residual "
                           "additions and concatenations are not exported); use backbone='plain' or 'vgg'")
            return
        for child_name, child in m.named_children():
            _walk_module(child, f"{name}.{child_name}", layers, skipped)
        return
    convert = _CONVERTERS.get(type(m))
    why = convert(m, name, layers) if convert is not None else (
        "hls4ml's PyTorch frontend does not take it; the decoders aelab builds upsample instead"
        if isinstance(m, nn.ConvTranspose2d) else
        "not an activation aelab exports (fit with activation='relu' or 'leaky_relu')"
        if "activation" in type(m).__module__ or type(m).__name__ in ("ELU", "GELU", "SELU", "SiLU")
        else "not a layer aelab exports")
    if why:
        skipped.append(f"{name} ({type(m).__name__}): {why}")


# ------------------------------------------------------------------ the graph of a fitted model
def fitted_state(est_or_fitted):
    """The :class:`~aelab.fitted.Fitted` of an estimator (or the Fitted itself)."""
    from ..fitted import Fitted

    if isinstance(est_or_fitted, Fitted):
        return est_or_fitted
    if hasattr(est_or_fitted, "_state"):
        return est_or_fitted._state()
    raise ConfigError("expected a fitted aelab estimator or an aelab.fitted.Fitted, "
                      f"got {type(est_or_fitted).__name__}.")


def _build(f, whole: bool = False) -> Graph:
    cfg = f.model_cfg
    variational = bool(cfg.variational)
    target = "mu" if variational and not whole else "reconstruction"
    if cfg.kind != "autoencoder":
        return Graph([], target, skipped=[f"model ({type(f.model).__name__}): a {cfg.kind} model has no layers to "
                                          "convert; fit an Autoencoder"])
    layers: list = []
    skipped: list = []
    _walk_module(f.model.encoder, "encoder", layers, skipped)
    code_at = len(layers)
    if target == "reconstruction":
        _walk_module(f.model.decoder, "decoder", layers, skipped)
    if not skipped:
        k = cfg.latent_dim
        if target == "mu":  # keep the mean: the first k outputs of the last Linear
            layers[-1] = replace(layers[-1], W=layers[-1].W[:k], b=layers[-1].b[:k])
        elif variational:  # the decoder reads the mean: zero weights for the k logvar inputs (exact in any type)
            first = layers[code_at]
            layers[code_at] = replace(first, W=torch.cat([first.W, torch.zeros_like(first.W)], dim=1))
        if target == "reconstruction" and cfg.output == "sigmoid":
            layers.append(Activation("sigmoid"))
    conv = cfg.arch == "conv"
    return Graph(layers, target, pad_hw=tuple(f.model.pad_hw) if conv else None,
                 crop=tuple(cfg.input_shape) if conv else None, mask_zeros=bool(cfg.mask_zeros),
                 latent_dim=int(cfg.latent_dim), skipped=skipped, code_at=code_at)


def unsupported(est_or_fitted) -> list[str]:
    """Each module the firmware cannot take, as "name (Type): why" (empty when all can)."""
    return _build(fitted_state(est_or_fitted)).skipped


def graph(est_or_fitted, whole: bool = False) -> Graph:
    """The firmware :class:`Graph` of a fitted dense or convolutional autoencoder (a VAE: its encoder's mean).

    ``whole=True``: the whole network, whose code is the output of ``layers[code_at - 1]`` (what the score
    heads read); the same graph for an autoencoder, and for a VAE its encoder (mu and logvar, 2k outputs)
    and decoder, whose first Dense reads mu (its weights on logvar are 0).

    Raises ConfigError naming each module that is not taken (the residual, inception and dense
    backbones' blocks, transposed convolutions, ELU, GELU; PCA has no layers).
    """
    g = _build(fitted_state(est_or_fitted), whole)
    if g.skipped:
        raise ConfigError(f"fixed-point emulation and hls4ml export cannot take {'; '.join(g.skipped)}. They take "
                          "dense and convolutional autoencoders of Linear, Conv2d, batch norm, max or average "
                          "pooling, nearest upsampling, ReLU, LeakyReLU, Tanh and Sigmoid: fit with "
                          "activation='relu' or 'leaky_relu', and backbone='plain' or 'vgg' for images "
                          "(aelab.presets.adc2021() for collider events).")
    return g


# ------------------------------------------------------------------ input and score
def network_input(f, X, p: FixedPoint | None = None, g: Graph | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the firmware's input, mask of inputs that are exactly 0 or None) in float64: X scaled, zero-padded to
    the convolutional network's size, saturated to p's range and cast to p (``p=None``: float)."""
    f = fitted_state(f)
    x = torch.from_numpy(np.asarray(f.to_net(X))).double()
    pad_hw = g.pad_hw if g is not None else (tuple(f.model.pad_hw) if f.model_cfg.arch == "conv" else None)
    if pad_hw is not None:
        ph, pw = pad_hw
        x = nn.functional.pad(x, (0, pw - x.shape[-1], 0, ph - x.shape[-2]))
    else:
        x = x.reshape(len(x), -1)
    mask = x == 0 if f.model_cfg.mask_zeros else None
    if p is not None:
        lo, hi = p.range
        x = p.quantize(x.clamp(lo, hi))
    return x, mask


def firmware_score(g: Graph, x: torch.Tensor, out: torch.Tensor, mask) -> torch.Tensor:
    """The firmware's score from its input ``x`` and output ``out``: the sum of squared errors (over the inputs
    present for ``mask_zeros`` models, over the image's own pixels for padded conv models), or ``|mu|^2``."""
    if g.target == "mu":
        return out.square().sum(1)
    err = (out - x).square()
    err = err.masked_fill(mask, 0.0) if mask is not None else err
    if err.dim() == 4 and g.crop is not None:
        err = err[..., : g.crop[-2], : g.crop[-1]]
    return err.flatten(1).sum(1)


def integer_bits_for(big: float) -> int:
    """Integer bits (sign included) of a signed type that holds ``big``."""
    return max(1, int(math.floor(math.log2(big))) + 2) if big > 0 else 1


def weight_integer_bits(g: Graph) -> int:
    """Integer bits (sign included) that hold the largest weight and bias."""
    return integer_bits_for(max(float(t.abs().max()) for layer in g.weighted for t in (layer.W, layer.b)))
