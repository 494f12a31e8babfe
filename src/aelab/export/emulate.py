"""Bit-accurate emulation of hls4ml firmware in PyTorch (float64 holds every product and sum of these
widths exactly).

The arithmetic is hls4ml's (Vitis/Vivado backends, ``io_parallel``, latency strategy):

* batch norm is folded into the Linear or Conv2d layer before it (in float64) before anything is cast;
* the weights and biases are rounded to the nearest value of their type and saturated, offline
  (:func:`~aelab.export.fixed.round_weights`), and the input and every activation and pooling output
  are cast to the data type (by its own rounding mode);
* a Dense or Conv2D layer's products and sum: with ``accum="auto"`` (the default, as hls4ml infers
  them) the accumulator and the layer's result are as wide as the sum needs, so nothing is lost
  there; with ``accum="same"`` every product, the running sum and the result are cast to the
  data type (hls4ml ``granularity="model"``; for convolutions only the sum is cast here, an
  approximation);
* convolutional models (``backbone="plain"`` or ``"vgg"``): 3x3 convolutions with zero padding,
  max or average pooling, nearest upsampling; the input is zero-padded to the network's size as
  the model pads it, and the score crops the output back;
* the leaky-ReLU slope is cast to ``ap_ufixed<8,I>`` with the slope's leading bit as its top
  bit ("auto"; hls4ml's choice for a constant), or to the data type ("same");
* the score is computed from the fixed-point input and output as firmware computes it
  (:func:`~aelab.export.ir.firmware_score`); or, with ``score=`` a registered score name, by that
  score's head module on the fixed-point input, code and reconstruction (:mod:`aelab.export.firmware`
  says what runs in fixed point and what in float);
* sigmoid and tanh outputs are float functions cast to the precision here, while hls4ml uses
  lookup tables: close, not bit-exact.

The scaler is applied in float before the cast and the scaled input saturates at the input
type's range (a trigger clips rather than wraps its inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch
from typing import Callable

import numpy as np
import torch
from torch import nn

from .firmware import FirmwarePass, check_scores, head_scores
from .fixed import Precision, cast_weights
from .ir import (Activation, Conv, Dense, Flatten, Graph, Pool, Unflatten, Upsample, firmware_score, fitted_state,
                 graph, network_input)

__all__ = ["Context", "run", "emulate", "firmware_scores", "firmware_pass", "check_rows", "ROWS"]

ROWS = 2048  # rows per emulated block (the per-product tensors of accum="same" are rows x out x in)


def _float(x):
    return x


@dataclass
class Context:
    """How a graph runs: ``fq`` casts a tensor to the data type, ``wq`` the weights and biases; ``exact``:
    per-product casts for accum="same" (emulation) rather than the sum only (fine-tuning)."""

    precision: Precision | None  # None: the float model
    fq: Callable = _float
    wq: Callable = _float
    exact: bool = True

    @classmethod
    def of(cls, precision: Precision | None, weights_cast: bool = False, exact: bool = True) -> Context:
        """``weights_cast``: the graph's weights are already the firmware's (do not cast them again)."""
        if precision is None:
            return cls(None)
        wq = _float if weights_cast else (lambda w: cast_weights(w, precision.weight))
        return cls(precision, precision.data.quantize, wq, exact)

    @property
    def same(self) -> bool:
        return self.precision is not None and self.precision.accum == "same"


@singledispatch
def apply(layer, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    raise TypeError(f"no emulation of {type(layer).__name__}")


@apply.register
def _(layer: Dense, x, ctx):
    W, b = ctx.wq(layer.W), ctx.wq(layer.b)
    if ctx.same and ctx.exact:
        # every product is cast to the accumulator type; sums of values on its grid stay on it
        return ctx.fq(ctx.fq(x[:, None, :] * W[None]).sum(-1) + b)
    x = nn.functional.linear(x, W, b)
    return ctx.fq(x) if ctx.same else x


@apply.register
def _(layer: Conv, x, ctx):  # accum="same": the sum is cast, not each product (approximate)
    x = nn.functional.conv2d(x, ctx.wq(layer.W), ctx.wq(layer.b), padding=layer.padding)
    return ctx.fq(x) if ctx.same else x


@apply.register
def _(layer: Pool, x, ctx):
    return ctx.fq((nn.functional.max_pool2d if layer.kind == "max" else nn.functional.avg_pool2d)(x, layer.k))


@apply.register
def _(layer: Upsample, x, ctx):
    return ctx.fq(nn.functional.interpolate(x, scale_factor=layer.scale, mode="nearest"))


@apply.register
def _(layer: Flatten, x, ctx):
    return x.flatten(1)


@apply.register
def _(layer: Unflatten, x, ctx):
    return x.reshape(len(x), *layer.shape)


@apply.register
def _(layer: Activation, x, ctx):
    if layer.kind == "relu":
        return ctx.fq(torch.relu(x))
    if layer.kind == "leaky_relu":
        slope = layer.slope if ctx.precision is None else \
            float(ctx.precision.slope(layer.slope).quantize(torch.tensor(layer.slope)))
        return ctx.fq(torch.where(x > 0, x, slope * x))
    # sigmoid, tanh: float function cast to the precision (hls4ml: a lookup table)
    return ctx.fq(torch.sigmoid(x) if layer.kind == "sigmoid" else torch.tanh(x))


def run(layers, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Apply ``layers`` to the (already cast) input ``x``."""
    for layer in layers:
        x = apply(layer, x, ctx)
    return x


def run_to_code(layers, x: torch.Tensor, ctx: Context, code_at: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the output of ``layers[code_at - 1]``, the last output): the code and the network's output."""
    code = x
    for i, layer in enumerate(layers):
        x = apply(layer, x, ctx)
        if i + 1 == code_at:
            code = x
    return code, x


def check_rows(f, X) -> np.ndarray:
    """X checked against the model's per-sample shape."""
    from .._validation import check_array, check_sample_shape

    X = check_array(X, dtype=None)
    check_sample_shape(X, f.layout.input_shape, "fixed-point emulation")
    return X


def firmware_graph(g: Graph, precision: Precision) -> Graph:
    """``g`` with its weights cast once to what the firmware holds."""
    return g.with_weights([cast_weights(t, precision.weight) for layer in g.weighted for t in (layer.W, layer.b)])


@torch.no_grad()
def firmware_pass(f, X, prec: Precision) -> FirmwarePass:
    """The whole network (:func:`~aelab.export.ir.graph` ``whole=True``) emulated at ``prec`` on the checked
    rows X: its cast input, code and output."""
    g = graph(f, whole=True)
    q, ctx = firmware_graph(g, prec), Context.of(prec, weights_cast=True)
    parts = []
    for i in range(0, len(X), ROWS):
        x, absent = network_input(f, X[i : i + ROWS], prec.data, g)
        parts.append(FirmwarePass(x, absent, *run_to_code(q.layers, x, ctx, g.code_at)))
    return FirmwarePass.cat(parts)


@torch.no_grad()
def emulate(est_or_fitted, X, precision="ap_fixed<16,6>", accum: str = "auto", weight_precision=None,
            score: str | None = None) -> dict:
    """Bit-accurate emulation of the hls4ml firmware of the model at ``precision`` (``weight_precision``:
    another type for the weights and biases; default the same; or one :class:`~aelab.export.fixed.Precision`).

    Returns a dict of numpy arrays: ``output`` (the network's fixed-point output in scaled units:
    the reconstruction, or mu for a VAE), ``score`` (the firmware score, see
    :func:`firmware_scores`) and ``float_score`` (the same score of the float model).

    ``score``: a registered score name (:data:`aelab.heads.HEADS`). The whole network (a VAE's decoder
    too) runs in fixed point and that score's head (``Fitted.head(score)``, the module
    ``decision_function`` runs) scores the fixed-point input, code and reconstruction in float64:
    ``score`` holds those scores, ``float_score`` ``decision_function(X, score)`` of the float model,
    ``output`` the fixed-point reconstruction and ``code`` the fixed-point code (a VAE: mu, then logvar).
    The neighbour heads measure the fixed-point input's distance to their reference rows (float32
    scaled units). See :mod:`aelab.export.firmware`.
    """
    f = fitted_state(est_or_fitted)
    prec = Precision.of(precision, weight_precision, accum)
    if score is not None:
        (name,) = check_scores(f, [score])
        X = check_rows(f, X)
        empty = np.empty(0)
        p = firmware_pass(f, X, prec) if len(X) else None
        return {"output": p.output.numpy() if p else empty, "code": p.code.numpy() if p else empty,
                "score": head_scores(f, p, name) if p else empty, "target": "reconstruction",
                "float_score": f.scores(X, name, "fixed-point emulation") if p else empty}
    g = graph(f)
    q = firmware_graph(g, prec)
    X = check_rows(f, X)
    ctx, flt = Context.of(prec, weights_cast=True), Context.of(None)
    outs, scores, floats = [], [], []
    for i in range(0, len(X), ROWS):
        x, mask = network_input(f, X[i : i + ROWS], prec.data, g)
        out = run(q.layers, x, ctx)
        outs.append(out.float().numpy())
        scores.append(firmware_score(g, x, out, mask).numpy())
        xf, _ = network_input(f, X[i : i + ROWS], None, g)
        floats.append(firmware_score(g, xf, run(g.layers, xf, flt), mask).numpy())
    cat = (lambda a: np.concatenate(a)) if outs else (lambda a: np.empty(0))
    return {"output": cat(outs), "score": cat(scores), "float_score": cat(floats), "target": g.target}


def firmware_scores(est_or_fitted, X, precision=None, accum: str = "auto", weight_precision=None,
                    score: str | None = None) -> np.ndarray:
    """The score the firmware computes, per row of X: the sum of squared errors between the (fixed-point)
    scaled input and the reconstruction, over the inputs that are present for ``mask_zeros`` models;
    ``|mu|^2`` for a VAE; or the registered ``score``'s head on the fixed-point outputs (see :func:`emulate`).
    ``precision=None``: the float model."""
    if precision is None and score is not None:
        f = fitted_state(est_or_fitted)
        return f.scores(X, check_scores(f, [score])[0], "the float model")
    if precision is None:
        return emulate(est_or_fitted, X, "ap_fixed<32,16>", accum)["float_score"]
    return emulate(est_or_fitted, X, precision, accum, weight_precision, score)["score"]


def float_outputs(f, g: Graph, X, until: int | None = None):
    """Yield, per block of rows, the float input and each layer's float output (for range profiling)."""
    flt = Context.of(None)
    for i in range(0, len(X) if until is None else min(len(X), until), ROWS):
        x, _ = network_input(f, X[i : i + ROWS], None, g)
        outs = [x]
        for layer in g.layers:
            x = apply(layer, x, flt)
            outs.append(x)
        yield outs


