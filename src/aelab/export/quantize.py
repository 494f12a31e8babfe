"""Fixed-point arithmetic for FPGA firmware: ``ap_fixed<W,I>`` emulation, the bit-width scan, and
quantisation-aware fine-tuning.

The arithmetic is hls4ml's (Vitis/Vivado backends, ``io_parallel``, latency strategy), done in
float64 PyTorch, which holds every product and sum of these widths exactly:

* a value is cast to ``ap_fixed<W,I>`` by its quantisation mode (default ``AP_TRN``: toward
  minus infinity, to a multiple of the LSB ``2**(I-W)``) and then its overflow mode
  (default ``AP_WRAP``: two's-complement wrap-around); ``AP_RND``, ``AP_RND_CONV``,
  ``AP_TRN_ZERO`` and ``AP_SAT``, ``AP_SAT_SYM`` are understood too. These are hls4ml's
  defaults, and what its ``compile()`` emulation (the Xilinx ap_types headers) does;
* batch norm is folded into the Linear or Conv2d layer before it (in float64) before anything is cast;
* the weights and biases are rounded to the nearest value of their type and saturated, offline
  (:func:`round_weights`; hls4ml would truncate them), and the input and every activation and
  pooling output are cast to the precision in the firmware (by its own rounding mode);
* a Dense or Conv2D layer's products and sum: with ``accum="auto"`` (the default, as hls4ml infers
  them) the accumulator and the layer's result are as wide as the sum needs, so nothing is
  lost there; with ``accum="same"`` every product, the running sum and the result are cast
  to the precision (hls4ml ``granularity="model"``; for convolutions only the sum is cast here, an
  approximation). "auto" costs no extra storage between layers (the activation casts back to
  the precision) and kept per-sample errors about 5x smaller at ``ap_fixed<16,6>`` on the dense
  trigger model;
* convolutional models (``backbone="plain"`` or ``"vgg"``): 3x3 convolutions with zero padding,
  max or average pooling, nearest upsampling; the input is zero-padded to the network's size as
  the model pads it, and the score crops the output back;
* the leaky-ReLU slope is cast to ``ap_ufixed<8,I>`` with the slope's leading bit as its top
  bit ("auto"; hls4ml's choice for a constant), or to the precision ("same");
* the score is computed from the fixed-point input and output as firmware computes it: the sum
  of squared errors (over the present inputs for ``mask_zeros`` models), or ``|mu|^2`` for an
  encoder-only VAE;
* sigmoid and tanh outputs are float functions cast to the precision here, while hls4ml uses
  lookup tables: close, not bit-exact.

The scaler is applied in float before the cast (documented preprocessing, see
:func:`aelab.export.hls.to_hls`) and the scaled input saturates at the input type's range
(a trigger clips rather than wraps its inputs).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError, DataError, require

__all__ = ["FixedPoint", "parse_precision", "round_weights", "cast_weights", "fixed_point_network", "network_input",
           "emulate", "firmware_scores", "bit_scan", "smallest_width", "adder_cost", "format_scan", "plot_scan",
           "finetune", "ROUNDING", "OVERFLOW"]

ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_CONV", "RND_ZERO", "RND_INF", "RND_MIN_INF")
OVERFLOW = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")
ACCUM = ("auto", "same")
_PRECISION = re.compile(r"^\s*(?:ap_)?(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(?:AP_)?(\w+)\s*)?"
                        r"(?:,\s*(?:AP_)?(\w+)\s*)?(?:,\s*\d+\s*)?>\s*$", re.I)
ROWS = 2048  # rows per emulated block (the per-product tensors of accum="same" are rows x out x in)


@dataclass(frozen=True)
class FixedPoint:
    """``ap_fixed<width, integer, AP_<rounding>, AP_<overflow>>``: ``integer`` bits (sign included) before the
    binary point, ``width - integer`` after it; ``signed=False`` is ``ap_ufixed``."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self):
        if not 1 <= self.width <= 64:
            raise ConfigError(f"a fixed-point width must be 1 to 64 bits, got {self.width} in {self}.")
        if self.rounding not in ROUNDING or self.overflow not in OVERFLOW:
            raise ConfigError(f"{self}: rounding must be one of {ROUNDING} and overflow one of {OVERFLOW}.")

    @property
    def lsb(self) -> float:
        return 2.0 ** (self.integer - self.width)

    @property
    def range(self) -> tuple[float, float]:
        """Smallest and largest representable values."""
        lo = -(2 ** (self.width - 1)) if self.signed else 0
        hi = 2 ** (self.width - 1) - 1 if self.signed else 2**self.width - 1
        return lo * self.lsb, hi * self.lsb

    def __str__(self) -> str:
        modes = "" if (self.rounding, self.overflow) == ("TRN", "WRAP") else f",AP_{self.rounding},AP_{self.overflow}"
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}{modes}>"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Cast ``x`` (float64 is exact up to 53 bits) to this type, as the ap_fixed constructor does."""
        v = x.double() / self.lsb
        r = self.rounding
        if r == "TRN":
            q = torch.floor(v)
        elif r == "TRN_ZERO":
            q = torch.trunc(v)
        elif r == "RND":
            q = torch.floor(v + 0.5)
        elif r == "RND_CONV":
            q = torch.round(v)
        elif r == "RND_ZERO":
            q = torch.where(v >= 0, torch.ceil(v - 0.5), torch.floor(v + 0.5))
        elif r == "RND_MIN_INF":
            q = torch.ceil(v - 0.5)
        else:  # RND_INF
            q = torch.where(v >= 0, torch.floor(v + 0.5), torch.ceil(v - 0.5))
        lo, hi = (-(2 ** (self.width - 1)), 2 ** (self.width - 1) - 1) if self.signed else (0, 2**self.width - 1)
        if self.overflow == "WRAP":
            q = torch.remainder(q - lo, 2.0**self.width) + lo
        elif self.overflow == "SAT_ZERO":
            q = torch.where((q < lo) | (q > hi), torch.zeros_like(q), q)
        else:
            q = q.clamp(-hi if self.overflow == "SAT_SYM" and self.signed else lo, hi)
        return q * self.lsb

    def replace(self, **changes) -> "FixedPoint":
        return dataclasses.replace(self, **changes)


def parse_precision(precision) -> FixedPoint:
    """``"ap_fixed<16,6>"``, ``"fixed<8,3,AP_RND,AP_SAT>"``, ``"ap_ufixed<8,0>"``, a (width, integer) pair
    or a :class:`FixedPoint`."""
    if isinstance(precision, FixedPoint):
        return precision
    if isinstance(precision, (tuple, list)) and len(precision) == 2:
        return FixedPoint(int(precision[0]), int(precision[1]))
    m = _PRECISION.match(str(precision))
    if m is None:
        raise ConfigError(f"cannot parse the precision {precision!r}; expected an hls4ml fixed-point type such as "
                          "'ap_fixed<16,6>' (16 bits, 6 of them integer bits including the sign), "
                          "'ap_ufixed<8,0>' or 'ap_fixed<8,3,AP_RND,AP_SAT>'.")
    unsigned, w, i, rnd, ovf = m.groups()
    rnd, ovf = (rnd or "TRN").upper(), (ovf or "WRAP").upper()
    if rnd not in ROUNDING or ovf not in OVERFLOW:
        raise ConfigError(f"the precision {precision!r} names rounding AP_{rnd} and overflow AP_{ovf}; expected "
                          f"rounding one of {['AP_' + r for r in ROUNDING]} and overflow one of "
                          f"{['AP_' + o for o in OVERFLOW]}.")
    return FixedPoint(int(w), int(i), not unsigned, rnd, ovf)


# ---------------------------------------------------------------- the network as fixed-point operations
def _fitted(est_or_fitted):
    from ..fitted import Fitted

    if isinstance(est_or_fitted, Fitted):
        return est_or_fitted
    if hasattr(est_or_fitted, "_state"):
        return est_or_fitted._state()
    raise ConfigError("expected a fitted aelab estimator or an aelab.fitted.Fitted, "
                      f"got {type(est_or_fitted).__name__}.")


_ACTS = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
_SKIP = (nn.Flatten, nn.Identity, nn.Dropout)
_WEIGHTED = ("dense", "conv")


def fixed_point_network(est_or_fitted) -> tuple[list[tuple], str]:
    """The network as float64 operations, in order, batch norm folded into the layer before it, and what it
    outputs: "reconstruction" (autoencoder: encoder then decoder) or "mu" (VAE: the encoder's mean only).

    Operations: ``("dense", W, b)``, ``("conv", W, b, padding)`` (3x3 and such, stride 1, zero padding),
    ``("maxpool", k)``, ``("avgpool", k)``, ``("upsample", s)`` (nearest), ``("flatten",)``,
    ``("unflatten", (C, H, W))``, ``("relu",)``, ``("leaky_relu", slope)``, ``("sigmoid",)``, ``("tanh",)``.
    A convolutional model takes its input zero-padded to a multiple of ``2**stages`` (see
    :func:`network_input`) and its score crops the output back.

    Raises ConfigError naming each layer that is not one of these (the residual, inception and dense
    backbones' blocks, transposed convolutions, ELU, GELU; PCA has no layers).
    """
    ops, target, bad = _walk(_fitted(est_or_fitted))
    if bad:
        raise ConfigError(f"fixed-point emulation and hls4ml export cannot take {'; '.join(bad)}. They take dense "
                          "and convolutional autoencoders of Linear, Conv2d, batch norm, max or average pooling, "
                          "nearest upsampling, ReLU, LeakyReLU, Tanh and Sigmoid: fit with activation='relu' or "
                          "'leaky_relu', and backbone='plain' or 'vgg' for images (aelab.presets.adc2021() for "
                          "collider events).")
    return ops, target


def _walk(f) -> tuple[list[tuple], str, list[str]]:
    """(operations, target, each layer that is not taken as "name (Type): why")."""
    cfg = f.model_cfg
    if cfg.kind != "autoencoder":
        return [], "", [f"model ({type(f.model).__name__}): a {cfg.kind} model has no layers to convert; fit an "
                        "Autoencoder"]
    k = cfg.latent_dim
    halves = [("encoder", f.model.encoder)] if cfg.variational else [("encoder", f.model.encoder),
                                                                        ("decoder", f.model.decoder)]
    ops: list[tuple] = []
    bad: list[str] = []
    for prefix, half in halves:
        _layers(half, prefix, ops, bad)
    if bad:
        return ops, "", bad
    if cfg.variational:  # keep the mean: the first k outputs of the last Linear
        _, W, b = ops[-1]
        ops[-1] = ("dense", W[:k], b[:k])
    elif cfg.output == "sigmoid":
        ops.append(("sigmoid",))
    return ops, _target(f), bad


def _target(f) -> str:
    """What the exported network outputs: "mu" (a VAE's encoder mean) or "reconstruction"."""
    return "mu" if f.model_cfg.variational else "reconstruction"


def _layers(m: nn.Module, name: str, ops: list, bad: list) -> None:
    """Append the operations of module ``m`` (leaves in the order a Sequential runs them) to ``ops``."""
    if list(m.children()):
        if type(m).forward is not nn.Sequential.forward:
            bad.append(f"{name} ({type(m).__name__}): its forward is not a plain sequence of layers (residual "
                       "additions and concatenations are not exported); use backbone='plain' or 'vgg'")
            return
        for child_name, child in m.named_children():
            _layers(child, f"{name}.{child_name}", ops, bad)
        return
    if isinstance(m, _SKIP):
        if isinstance(m, nn.Flatten) and ops and any(op[0] == "conv" for op in ops):
            ops.append(("flatten",))
        return
    if isinstance(m, nn.Linear):
        ops.append(("dense", m.weight.detach().double().cpu(), m.bias.detach().double().cpu()))
    elif isinstance(m, nn.Conv2d) and type(m) is nn.Conv2d:
        pad = m.padding if isinstance(m.padding, tuple) else None
        if (m.stride != (1, 1) or m.dilation != (1, 1) or m.groups != 1 or pad is None
                or m.padding_mode != "zeros"):
            bad.append(f"{name} (Conv2d): stride {m.stride}, dilation {m.dilation}, groups {m.groups}, padding "
                       f"{m.padding!r} ({m.padding_mode}); exported convolutions have stride 1, no dilation, one "
                       "group and zero padding")
            return
        b = m.bias.detach().double().cpu() if m.bias is not None else torch.zeros(m.out_channels, dtype=torch.float64)
        ops.append(("conv", m.weight.detach().double().cpu(), b, tuple(pad)))
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and ops and ops[-1][0] in _WEIGHTED:
        if _is_identity(m):  # left by finetune: the layer before it holds the folded weights
            return
        s = m.weight.detach().double().cpu() / torch.sqrt(m.running_var.double().cpu() + m.eps)
        W, b = ops[-1][1], ops[-1][2]
        mean, beta = m.running_mean.double().cpu(), m.bias.detach().double().cpu()
        ops[-1] = (ops[-1][0], W * s.view(-1, *[1] * (W.dim() - 1)), (b - mean) * s + beta, *ops[-1][3:])
    elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        if m.kernel_size not in (k, (k, k)) or m.stride not in (k, (k, k)) or m.padding not in (0, (0, 0)):
            bad.append(f"{name} ({type(m).__name__}): kernel {m.kernel_size}, stride {m.stride}, padding "
                       f"{m.padding}; exported pooling has equal kernel and stride and no padding")
            return
        ops.append(("maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool", int(k)))
    elif isinstance(m, nn.Upsample) and m.mode == "nearest" and float(m.scale_factor or 0).is_integer():
        ops.append(("upsample", int(m.scale_factor)))
    elif isinstance(m, nn.Unflatten):
        ops.append(("unflatten", tuple(int(v) for v in m.unflattened_size)))
    elif type(m) in _ACTS:
        act = _ACTS[type(m)]
        ops.append((act, float(m.negative_slope)) if isinstance(m, nn.LeakyReLU) else (act,))
    else:
        why = ("hls4ml's PyTorch frontend does not take it; the decoders aelab builds upsample instead"
               if isinstance(m, nn.ConvTranspose2d) else
               "not an activation aelab exports (fit with activation='relu' or 'leaky_relu')"
               if "activation" in type(m).__module__ or type(m).__name__ in ("ELU", "GELU", "SELU", "SiLU")
               else "not a layer aelab exports")
        bad.append(f"{name} ({type(m).__name__}): {why}")


def _is_identity(bn: nn.Module) -> bool:
    return bool((bn.running_mean == 0).all() and (bn.bias == 0).all()
                and (bn.weight == 1).all() and (bn.running_var == 1 - bn.eps).all())


def _slope_type(alpha: float, p: FixedPoint, accum: str) -> FixedPoint:
    """The leaky-ReLU slope's type: ap_ufixed<8,I> with the slope's leading bit on top ("auto"), else p."""
    if accum == "same" or alpha <= 0:
        return p
    return FixedPoint(8, int(math.floor(math.log2(alpha))) + 1, signed=False)


def _run(ops, x: torch.Tensor, p: FixedPoint | None, accum: str, fq=None, exact: bool = True, pw=None,
         wq=None) -> torch.Tensor:
    """Apply ``ops`` to the (already cast) input ``x``; ``fq`` casts a tensor to ``p`` (default
    ``p.quantize``; ``p=None``: the float model), ``wq`` the weights and biases (default: to ``pw`` or p as
    hls4ml writes them). ``exact``: per-product casts for accum="same" (emulation); False casts the sum
    only (fine-tuning, where the rows x out x in products would be too costly)."""
    if p is None:
        fq = wq = _float
    wq = wq or fq or (lambda w: cast_weights(w, pw or p))
    fq = fq or p.quantize
    for op in ops:
        kind = op[0]
        if kind == "dense":
            W, b = wq(op[1]), wq(op[2])
            if accum == "same" and exact:
                # every product is cast to the accumulator type; sums of values on its grid stay on it
                x = fq(fq(x[:, None, :] * W[None]).sum(-1) + b)
            else:
                x = nn.functional.linear(x, W, b)
                x = fq(x) if accum == "same" else x
        elif kind == "conv":  # accum="same": the sum is cast, not each product (approximate)
            x = nn.functional.conv2d(x, wq(op[1]), wq(op[2]), padding=op[3])
            x = fq(x) if accum == "same" else x
        elif kind in ("maxpool", "avgpool"):
            x = fq((nn.functional.max_pool2d if kind == "maxpool" else nn.functional.avg_pool2d)(x, op[1]))
        elif kind == "upsample":
            x = fq(nn.functional.interpolate(x, scale_factor=op[1], mode="nearest"))
        elif kind == "flatten":
            x = x.flatten(1)
        elif kind == "unflatten":
            x = x.reshape(len(x), *op[1])
        elif kind == "relu":
            x = fq(torch.relu(x))
        elif kind == "leaky_relu":
            slope = op[1] if p is None else float(_slope_type(op[1], p, accum).quantize(torch.tensor(op[1])))
            x = fq(torch.where(x > 0, x, slope * x))
        else:  # sigmoid, tanh: float function cast to the precision (hls4ml: a lookup table)
            x = fq(torch.sigmoid(x) if kind == "sigmoid" else torch.tanh(x))
    return x


def _float(x):
    return x


def round_weights(w: torch.Tensor, p: FixedPoint) -> torch.Tensor:
    """Weights and biases on ``p``'s grid: rounded to the nearest value (ties to even) and saturated.

    This is done offline, before hls4ml sees the network. hls4ml writes float weights as decimal text and the
    firmware's cast truncates them (the type's default ``AP_TRN``), which moves every weight down by half an LSB
    on average: at ``ap_fixed<16,6>`` that alone cost the trigger preset about 1% of its per-sample score
    (median), against 0.2% with rounded weights. Values on the grid survive hls4ml's text and cast exactly.
    """
    return _weight_type(p).quantize(w)


def _weight_type(p: FixedPoint) -> FixedPoint:
    """p with the rounding and overflow that :func:`round_weights` applies: nearest (ties to even), saturate."""
    return p.replace(rounding="RND_CONV", overflow="SAT")


def cast_weights(w: torch.Tensor, p: FixedPoint) -> torch.Tensor:
    """Weights and biases as the firmware holds them: :func:`round_weights` in float32 (what aelab hands
    hls4ml), then hls4ml's own path, decimal text with max(0, W - I) places cast to the type (exact for
    values on the grid up to 24 significant bits)."""
    places = max(0, p.width - p.integer)
    text = [float(f"{v:.{places}f}") for v in round_weights(w, p).float().flatten().tolist()]
    return p.quantize(torch.tensor(text, dtype=torch.float64).reshape(w.shape))


def network_input(f, X, p: FixedPoint | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the firmware's input, mask of inputs that are exactly 0 or None) in float64: X scaled, zero-padded to
    the convolutional network's size, saturated to p's range and cast to p (``p=None``: float)."""
    x = torch.from_numpy(f.to_net(X)).double()
    if f.model_cfg.arch == "conv":
        ph, pw = f.model._pad_hw
        x = nn.functional.pad(x, (0, pw - x.shape[-1], 0, ph - x.shape[-2]))
    else:
        x = x.reshape(len(X), -1)
    mask = x == 0 if f.model_cfg.mask_zeros else None
    if p is not None:
        lo, hi = p.range
        x = p.quantize(x.clamp(lo, hi))
    return x, mask


def _score(x: torch.Tensor, out: torch.Tensor, target: str, mask, shape=None) -> torch.Tensor:
    """The firmware score from its input and output; ``shape``: the (C, H, W) an image output is cropped to."""
    if target == "mu":
        return out.square().sum(1)
    err = (out - x).square()
    err = err.masked_fill(mask, 0.0) if mask is not None else err
    if err.dim() == 4 and shape is not None:
        err = err[..., : shape[-2], : shape[-1]]
    return err.flatten(1).sum(1)


def _crop(f):
    return f.model_cfg.input_shape if f.model_cfg.arch == "conv" else None


def _check_X(f, X) -> np.ndarray:
    from .._validation import check_array, check_sample_shape

    X = check_array(X, dtype=None)
    check_sample_shape(X, f.layout.input_shape, "fixed-point emulation")
    return X


@torch.no_grad()
def emulate(est_or_fitted, X, precision="ap_fixed<16,6>", accum: str = "auto", weight_precision=None) -> dict:
    """Bit-accurate emulation of the hls4ml firmware of a dense model at ``precision`` (``weight_precision``:
    another type for the weights and biases; default the same).

    Returns a dict of numpy arrays: ``output`` (the network's fixed-point output in scaled units:
    the reconstruction, or mu for a VAE), ``score`` (the firmware score, see
    :func:`firmware_scores`) and ``float_score`` (the same score of the float model).
    """
    f = _fitted(est_or_fitted)
    if accum not in ACCUM:
        raise ConfigError(f"accum={accum!r} is not known; expected one of {ACCUM}.")
    p = parse_precision(precision)
    pw = None if weight_precision is None else parse_precision(weight_precision)
    ops, target = fixed_point_network(f)
    qops = [(op[0], cast_weights(op[1], pw or p), cast_weights(op[2], pw or p), *op[3:]) if op[0] in _WEIGHTED
            else op for op in ops]  # weights cast once
    X = _check_X(f, X)
    outs, scores, floats = [], [], []
    for i in range(0, len(X), ROWS):
        x, mask = network_input(f, X[i : i + ROWS], p)
        out = _run(qops, x, p, accum, wq=_float)
        outs.append(out.float().numpy())
        scores.append(_score(x, out, target, mask, _crop(f)).numpy())
        xf, _ = network_input(f, X[i : i + ROWS], None)
        floats.append(_score(xf, _run(ops, xf, None, "auto"), target, mask, _crop(f)).numpy())
    cat = (lambda a: np.concatenate(a)) if outs else (lambda a: np.empty(0))
    return {"output": cat(outs), "score": cat(scores), "float_score": cat(floats), "target": target}


def firmware_scores(est_or_fitted, X, precision=None, accum: str = "auto", weight_precision=None) -> np.ndarray:
    """The score the firmware computes, per row of X: the sum of squared errors between the (fixed-point)
    scaled input and the reconstruction, over the inputs that are present for ``mask_zeros`` models;
    ``|mu|^2`` for a VAE. ``precision=None``: the float model."""
    if precision is None:
        return emulate(est_or_fitted, X, "ap_fixed<32,16>", accum)["float_score"]
    return emulate(est_or_fitted, X, precision, accum, weight_precision)["score"]


# ---------------------------------------------------------------- the bit-width scan
def _profile_integer_bits(f, ops, X) -> int:
    """Integer bits (sign included) that hold the largest weight and 99.99% of the inputs and layer outputs of the
    float model on (up to 40,000 rows of) X: rare larger inputs saturate, rare larger activations wrap."""
    vals = []
    for i in range(0, min(len(X), 20 * ROWS), ROWS):
        x, _ = network_input(f, X[i : i + ROWS], None)
        top = [x.abs().flatten()]
        for op in ops:
            x = _run([op], x, None, "auto")
            top.append(x.abs().flatten())
        vals.append(torch.cat(top))
    big = float(torch.quantile(torch.cat(vals)[:2**24], 0.9999)) if vals else 0.0
    return max(_bits_for(big), _weight_integer_bits(ops))


def _bits_for(big: float) -> int:
    return max(1, int(math.floor(math.log2(big))) + 2) if big > 0 else 1


def _weight_integer_bits(ops) -> int:
    """Integer bits (sign included) that hold the largest weight and bias."""
    return _bits_for(max(float(op[j].abs().max()) for op in ops if op[0] in _WEIGHTED for j in (1, 2)))


def adder_cost(est_or_fitted, precision, weight_precision=None) -> dict:
    """da4ml's estimate of the adder cost of the network's constant matrix-vector products at ``precision``
    (extra ``hls``: da4ml, the distributed-arithmetic strategy of hls4ml).

    Each Dense layer (a convolution: its kernel as a (C_in * k * k) x C_out matrix, the cost of one output
    pixel) is handed to ``da4ml.cmvm.solve`` with its weights as the firmware holds them
    (:func:`cast_weights`) and its inputs in the precision's range and step. Returns ``{"layers":
    [cost per layer], "total": sum}`` in da4ml's cost units (adder bits, roughly LUTs). An estimate: biases,
    activations, the latent layer's wide inputs and everything around the arithmetic are left out.
    """
    cmvm = _require_da4ml()
    f = _fitted(est_or_fitted)
    p = parse_precision(precision)
    pw = p if weight_precision is None else parse_precision(weight_precision)
    ops, _ = fixed_point_network(f)
    lo, hi = p.range
    costs = []
    for op in ops:
        if op[0] not in _WEIGHTED:
            continue
        W = cast_weights(op[1], pw)
        kernel = W.reshape(len(W), -1).T.numpy().astype(np.float32)  # (inputs, outputs)
        if not kernel.any():
            costs.append(0.0)
            continue
        sol = cmvm.solve(kernel, qintervals=[(lo, hi, p.lsb)] * kernel.shape[0])
        costs.append(float(sol.cost))
    return {"layers": costs, "total": float(sum(costs))}


_adder_cost = adder_cost  # bit_scan's argument of the same name hides it there


def _require_da4ml():
    require("da4ml", "hls", "The adder-cost estimate")
    return require("da4ml.cmvm", "hls", "The adder-cost estimate")


def _has_da4ml() -> bool:
    import importlib.util

    return importlib.util.find_spec("da4ml") is not None


def _metrics(y, s, fpr):
    from ..metrics import roc_auc, tpr_at_fpr

    return roc_auc(y, s), tpr_at_fpr(y, s, fpr)


def bit_scan(est_or_fitted, X, y, bits=range(4, 17), integer_bits="auto", weight_integer_bits="same",
             accum: str = "auto", fpr: float = 1e-5, tolerance: float = 0.05, engine: str = "torch",
             others: dict | None = None, adder_cost: bool | str = "auto") -> dict:
    """AUROC and TPR at ``fpr`` of the firmware score against the fixed-point width, relative to float.

    Parameters
    ----------
    est_or_fitted : fitted estimator or Fitted (a dense autoencoder or VAE)
    X, y : data and 0/1 labels (1 = anomaly, e.g. ``labels > 0`` of :func:`aelab.datasets.make_adc2021`)
    bits : widths W to emulate, as ``ap_fixed<W, I>``
    integer_bits : int or "auto"
        I for every width; "auto" takes the bits that hold the largest weight and 99.99% of the
        inputs and layer outputs of the float model on X, the same for every width.
    weight_integer_bits : "same", "auto" or int
        Integer bits of the weights and biases, ``ap_fixed<W, Iw>``: "same" as the data (one type
        everywhere), "auto" the fewest that hold the largest weight (hls4ml takes a per-layer
        weight type; trained weights are smaller than activations, so this keeps more of their bits).
    accum : "auto" or "same", see :mod:`aelab.export.quantize`
    fpr : float
        The operating point (the trigger's 1e-5 by default): needs >= 1/fpr background rows.
    tolerance : float
        The smallest width from which on AUROC and TPR are both at least ``1 - tolerance`` of the
        float model's at every scanned width is named ``smallest`` (a narrower width that passes by
        chance while a wider one fails is not named).
    engine : "torch" or "hls4ml"
        "torch": the float64 emulation of this module (seconds); "hls4ml": convert and
        ``compile()`` each width with hls4ml and g++ (4-8 s each, extra ``hls``).
    others : dict, optional
        name -> further fitted models (such as fine-tuned ones) scored alongside, each at every width.
    adder_cost : True, False or "auto"
        Add da4ml's estimate of the adder cost at each width (:func:`adder_cost`; about a second per
        layer and width): "auto" (default) when da4ml is installed, True requires it (extra ``hls``).

    Returns
    -------
    dict with "float" ({"auroc", "tpr"}), "rows" (one per width: bits, precision, auroc,
    tpr, auroc_rel, tpr_rel and the same for each of ``others``), "smallest" (width or None),
    and the settings.
    """
    f = _fitted(est_or_fitted)
    X = _check_X(f, X)
    y = np.asarray(y).ravel()
    if len(y) != len(X):
        raise DataError(f"y has {len(y)} labels but X has {len(X)} rows; pass one 0/1 label per row.")
    if engine not in ("torch", "hls4ml"):
        raise ConfigError(f"engine={engine!r} is not known; expected 'torch' or 'hls4ml'.")
    bits = [int(b) for b in bits]
    if not bits or min(bits) < 2 or max(bits) > 32:
        raise ConfigError(f"bits must be widths between 2 and 32, got {bits!r}.")
    ops, _ = fixed_point_network(f)
    if integer_bits == "auto":
        integer_bits = _profile_integer_bits(f, ops, X)
    if weight_integer_bits not in ("same", "auto") and not isinstance(weight_integer_bits, (int, np.integer)):
        raise ConfigError(f"weight_integer_bits must be 'same', 'auto' or an integer, got {weight_integer_bits!r}.")
    wi = {"same": None, "auto": _weight_integer_bits(ops)}.get(weight_integer_bits, weight_integer_bits)
    if adder_cost not in (True, False, "auto"):
        raise ConfigError(f"adder_cost must be True, False or 'auto', got {adder_cost!r}.")
    costs = adder_cost is True or (adder_cost == "auto" and _has_da4ml())
    if costs:
        _require_da4ml()
    models = {"": f, **{name: _fitted(m) for name, m in (others or {}).items()}}
    ref = {name: _metrics(y, firmware_scores(m, X), fpr) for name, m in models.items()}
    rows = []
    for w in bits:
        p = FixedPoint(w, int(integer_bits))
        pw = None if wi is None else FixedPoint(w, int(wi))
        row = {"bits": w, "precision": str(p), "weight_precision": str(pw or p)}
        if costs:
            row["adder_cost_estimate"] = _adder_cost(f, p, pw)["total"]
        for name, m in models.items():
            if engine == "hls4ml":
                from .hls import hls_scores

                s = hls_scores(m, X, p, accum, weight_precision=pw)
            else:
                s = firmware_scores(m, X, p, accum, pw)
            auc, tpr = _metrics(y, s, fpr)
            pre = f"{name}_" if name else ""
            row.update({f"{pre}auroc": auc, f"{pre}tpr": tpr, f"{pre}auroc_rel": auc / ref[""][0],
                        f"{pre}tpr_rel": tpr / ref[""][1] if ref[""][1] > 0 else math.nan})
        rows.append(row)
    smallest = smallest_width(rows, tolerance)
    return {"float": {"auroc": ref[""][0], "tpr": ref[""][1]},
            "others_float": {n: {"auroc": v[0], "tpr": v[1]} for n, v in ref.items() if n},
            "rows": rows, "smallest": smallest, "integer_bits": int(integer_bits),
            "weight_integer_bits": int(integer_bits if wi is None else wi), "accum": accum,
            "fpr": fpr, "tolerance": tolerance, "engine": engine, "n": int(len(y)), "n_anomalies": int((y > 0).sum())}


def smallest_width(rows, tolerance: float):
    """The smallest width W of ``rows`` (bit_scan's) such that AUROC and TPR relative to float are at least
    ``1 - tolerance`` at W and at every wider width scanned; None when the widest fails."""
    smallest = None
    for r in sorted(rows, key=lambda r: -r["bits"]):
        if not (r["auroc_rel"] >= 1 - tolerance and r["tpr_rel"] >= 1 - tolerance):
            break
        smallest = r["bits"]
    return smallest


def format_scan(scan: dict) -> str:
    """The scan as a markdown table."""
    others = list(scan.get("others_float", {}))
    fpr = f"{scan['fpr']:g}"
    head = ["bits", "precision", "AUROC", f"TPR@{fpr}", "AUROC / float", "TPR / float"]
    cost = bool(scan["rows"]) and "adder_cost_estimate" in scan["rows"][0]
    head += ["adders (da4ml estimate)"] if cost else []
    for n in others:
        head += [f"{n} AUROC", f"{n} TPR@{fpr}", f"{n} TPR / float"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fl = scan["float"]
    lines.append("| float | float32 | " + f"{fl['auroc']:.4f} | {fl['tpr']:.4f} | 1 | 1 |" + (" |" if cost else "")
                 + "".join(f" {scan['others_float'][n]['auroc']:.4f} | {scan['others_float'][n]['tpr']:.4f} | "
                           f"{scan['others_float'][n]['tpr'] / fl['tpr'] if fl['tpr'] else math.nan:.3f} |"
                           for n in others))
    for r in scan["rows"]:
        prec = r["precision"] + (f", weights {r['weight_precision']}" if r.get("weight_precision", r["precision"])
                                 != r["precision"] else "")
        cells = [str(r["bits"]), prec.replace("<", "&lt;").replace(">", "&gt;"), f"{r['auroc']:.4f}",
                 f"{r['tpr']:.4f}", f"{r['auroc_rel']:.3f}", f"{r['tpr_rel']:.3f}"]
        cells += [f"{r['adder_cost_estimate']:,.0f}"] if cost else []
        for n in others:
            cells += [f"{r[n + '_auroc']:.4f}", f"{r[n + '_tpr']:.4f}", f"{r[n + '_tpr_rel']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nsmallest width from which every width is within {scan['tolerance']:.0%} of float (AUROC and "
                 "TPR): "
                 f"{scan['smallest'] if scan['smallest'] is not None else 'none'}; "
                 f"integer bits {scan['integer_bits']}, "
                 f"accumulators {scan['accum']}, {scan['engine']} emulation, {scan['n']} rows, "
                 f"{scan['n_anomalies']} anomalies.")
    return "\n".join(lines)


def plot_scan(scan: dict):
    """AUROC and TPR at the scan's FPR relative to float against the width: a matplotlib Figure (extra plots)."""
    from ..plots import _figure

    fig = _figure(8, 3.2)
    bits = [r["bits"] for r in scan["rows"]]
    names = [""] + list(scan.get("others_float", {}))
    for ax, key, label in zip(fig.subplots(1, 2), ("auroc_rel", "tpr_rel"), ("AUROC", f"TPR at FPR {scan['fpr']:g}")):
        for name in names:
            ax.plot(bits, [r[f"{name}_{key}" if name else key] for r in scan["rows"]], "o-",
                    label=name or "post-training")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(1 - scan["tolerance"], color="grey", lw=0.8, ls=":")
        ax.set(xlabel=f"width W of ap_fixed<W,{scan['integer_bits']}>", ylabel=f"{label} / float", xticks=bits)
        ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- quantisation-aware fine-tuning
class _STE(torch.autograd.Function):
    """Cast forward, identity backward (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x, p):
        return p.quantize(x).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


def finetune(est_or_fitted, X, precision, epochs: int = 5, lr: float = 3e-4, batch_size: int = 1024,
             accum: str = "auto", weight_precision=None, random_state=None):
    """Quantisation-aware fine-tuning: train the folded network with its input, weights, biases and
    activations cast to ``precision`` in the forward pass and straight-through gradients.

    X: training rows (normal data, as for ``fit``). Batch norm is folded into the Linear layers
    first (and left as identity), so the trained float weights are what the firmware casts.
    Returns a new fitted estimator (or a new Fitted when given one) whose training scores,
    statistics and threshold are recomputed; its fixed-point emulation at ``precision`` is what
    it was trained for, its float scores are the shadow weights' and may differ.
    """
    from ..fitted import post_fit_statistics
    from ..thresholds import threshold_from_contamination, threshold_from_fpr

    f = _fitted(est_or_fitted)
    p = parse_precision(precision)
    pw = p if weight_precision is None else parse_precision(weight_precision)
    ops, target = fixed_point_network(f)
    X = _check_X(f, X)
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}.")
    gen = torch.Generator().manual_seed(int(np.random.default_rng(random_state).integers(2**31 - 1)))
    params = [nn.Parameter(op[j].float().clone()) for op in ops if op[0] in _WEIGHTED for j in (1, 2)]
    train_ops, it = [], iter(params)
    for op in ops:
        train_ops.append((op[0], next(it), next(it), *op[3:]) if op[0] in _WEIGHTED else op)
    xs, mask = network_input(f, X, None)
    lo, hi = p.range
    xs = xs.clamp(lo, hi).float()
    mask = mask if mask is not None else torch.zeros_like(xs, dtype=torch.bool)
    opt = torch.optim.Adam(params, lr=lr)

    def fq(t):
        return _STE.apply(t, p)

    pr = _weight_type(pw)  # the weights are rounded as round_weights rounds them

    def wq(t):
        return _STE.apply(t, pr)

    for _ in range(int(epochs)):
        for idx in torch.randperm(len(xs), generator=gen).split(int(batch_size)):
            x = fq(xs[idx])
            out = _run(train_ops, x, p, accum, fq, exact=False, wq=wq)
            loss = _score(x, out, target, mask[idx] if target != "mu" else None, _crop(f)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model = copy.deepcopy(f.model).cpu()
    it = iter(params)
    halves = [model.encoder] if f.model_cfg.variational else [model.encoder, model.decoder]
    with torch.no_grad():
        for half in halves:
            weighted = [m for m in half.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
            for m in half.modules():
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):  # folded into the layer before it: identity
                    m.running_mean.zero_(), m.running_var.fill_(1.0 - m.eps), m.weight.fill_(1.0), m.bias.zero_()
            for m in weighted:
                W, b = next(it), next(it)
                m.weight[: len(W)] = W  # a VAE's last Linear: only the mean's rows were trained
                if m.bias is not None:
                    m.bias[: len(b)] = b
    draft = f.replace(model=model.to(f.device).eval(),
                      history={**f.history, "finetune": {"precision": str(p), "epochs": int(epochs)}})
    st = post_fit_statistics(draft.model, X, lambda X_, fn, dt: draft.map(X_, fn, "finetune", dt), draft.score,
                             f.recon_kind)
    scores = st.pop("decision_scores")
    draft = draft.replace(**st)
    scores = draft.scores(X, draft.score, "finetune") if scores is None else scores
    rule = f.threshold_rule or {}
    threshold = (threshold_from_fpr(scores, rule["fpr"]) if "fpr" in rule
                 else threshold_from_contamination(scores, rule.get("contamination", 0.1)))
    draft = draft.replace(decision_scores=scores, threshold=float(threshold),
                          threshold_rule={**rule, "n": int(len(scores))})
    if isinstance(est_or_fitted, type(f)):
        return draft
    new = type(est_or_fitted)(**est_or_fitted.get_params(deep=False))
    new._fitted = draft
    return new
