"""hls4ml firmware projects of dense and convolutional autoencoders, with bit-accurate C emulation and a
parity report.

:func:`to_hls` writes an hls4ml project (Vitis by default; Vivado, ...) of the network with
the precision the user names, builds its C++ emulation with g++ (``compile()``: 4-8 s for the
dense trigger model, minutes for a 28x28 convolutional one; no Vivado needed) and compares the
emulated firmware score with the float model's.

What goes into the firmware, and at which precision P (``ap_fixed<W,I>``):

* **preprocessing**: the fitted scaler ``(x - offset) / scale`` is applied before the
  firmware, in float, then the scaled input saturates to P's range and is cast to P
  (``aelab_preprocessing.json`` in the project holds offset, scale and range). For the
  trigger preset (``scaler="scale"``) the offset is 0 and the step is one multiplication per
  input, which the upstream unpacking of the trigger objects does anyway. Folding it into
  the first layer instead would make the pT weights ~1/scale and cost them their digits;
* **images** go in channels-last, (H, W, C) in row-major order, zero-padded at the end to a
  multiple of 2**stages as the model pads them, and the reconstruction comes out channels-last
  (hls4ml ``channels_last_conversion="internal"``, which ``io_stream`` needs too);
* **batch norm** is folded into the Linear or Conv2d layer before it (in float64), before casting;
* **weights and biases** are rounded to P's nearest values and saturated offline, before
  hls4ml sees them (:func:`~aelab.export.quantize.round_weights`): hls4ml would truncate
  them, which cost the trigger preset about 1% of its per-sample score at ``ap_fixed<16,6>``;
* **the input and every activation and pooling output** are P; the leaky-ReLU slope is
  ``ap_ufixed<8,I>`` with its leading bit on top (P with ``accum="same"``);
* **accumulators and Dense/Conv2D results** are widened to what the sum needs (``accum="auto"``,
  hls4ml's own inference) so that no sum is truncated; the activation after a layer casts
  back to P, so this costs no storage between layers. The latent code (the encoder's last
  Dense, no activation) and the output layer therefore stay wide. ``accum="same"`` puts P
  everywhere (hls4ml ``granularity="model"``) for a strict check;
* **the score** is computed as firmware would from the fixed-point input and output: the sum
  of squared errors (over the inputs that are present for ``mask_zeros`` models, over the
  original pixels of a padded image), or ``|mu|^2`` for a VAE, whose export is the encoder's
  mean only.
  :func:`hls_scores` with ``score=`` scores any registered score's head on the C model's outputs
  instead (the whole network, a VAE's decoder too, with the code layer traced; see
  :mod:`aelab.export.firmware`).

:func:`aelab.export.quantize.emulate` reproduces this arithmetic in PyTorch; the tests check
that the two agree (bit for bit, but for hls4ml's lookup-table sigmoid and tanh).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import OrderedDict
from functools import singledispatch
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._fs import check_owned, write_owned
from .._validation import check_array, check_sample_shape
from ..exceptions import ConfigError, require
from .emulate import check_rows, emulate
from .firmware import FirmwarePass, check_scores, head_scores
from .fixed import FixedPoint, Precision, parse_precision, round_weights
from .ir import Activation, Conv, Dense, Flatten, Pool, Unflatten, Upsample, firmware_score, fitted_state, graph, \
    network_input, unsupported

__all__ = ["to_hls", "check_hls_compat", "hls_network", "hls_scores", "format_parity", "BACKENDS", "IO_TYPES"]

BACKENDS = ("Vitis", "Vivado", "Catapult", "oneAPI", "Quartus")
IO_TYPES = ("io_parallel", "io_stream")


def check_hls_compat(est_or_fitted) -> list[str]:
    """Each layer of the model that :func:`to_hls` cannot take, as "name (Type): why"; empty when all can.

    to_hls takes dense and convolutional autoencoders (and VAEs, encoder mean only) built of Linear,
    Conv2d (stride 1, zero padding), BatchNorm, max and average pooling, nearest upsampling, ReLU,
    LeakyReLU, Tanh and Sigmoid: the ``plain`` and ``vgg`` backbones. The residual, inception and
    dense backbones (additions and concatenations), other activations and PCA are named here.
    """
    return unsupported(est_or_fitted)


class ChannelsLastView(nn.Module):
    """``x.view(-1, C, H, W)`` as hls4ml reads it after a Dense: the Dense's outputs taken in (H, W, C) order.

    hls4ml's channels-last conversion gives a View after a Dense the channels-last shape (H, W, C)
    without moving any value, so :func:`hls_network` permutes the Dense's output rows to (H, W, C)
    order instead. In PyTorch this module is a plain view; only the firmware sees the intended layout.
    """

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.view(-1, *self.shape)


def hls_network(est_or_fitted, weight_precision=None, whole: bool = False) -> nn.Sequential:
    """The float network hls4ml converts: batch norm folded into the Linear and Conv2d layers, the
    activations, pooling and upsampling (a VAE: its encoder's mean only), named dense1, act1, conv2,
    pool2, ... (the firmware's layer names). ``weight_precision``: weights and biases rounded to that
    type first (:func:`~aelab.export.fixed.round_weights`). A convolutional decoder's first Dense
    has its outputs in (H, W, C) order before a :class:`ChannelsLastView`: the network is meant for
    hls4ml's channels-last conversion, not for PyTorch. ``whole``: :func:`~aelab.export.ir.graph`'s whole network."""
    g = graph(est_or_fitted, whole)
    pw = None if weight_precision is None else parse_precision(weight_precision)
    layers: OrderedDict = OrderedDict()
    state = {"n": 0, "last_dense": None, "pw": pw}
    for layer in g.layers:
        _torch_layer(layer, layers, state)
    return nn.Sequential(layers).eval()


@singledispatch
def _torch_layer(layer, layers: OrderedDict, state: dict) -> None:
    raise TypeError(f"no hls4ml layer for {type(layer).__name__}")


@_torch_layer.register(Dense)
@_torch_layer.register(Conv)
def _(layer, layers, state):
    state["n"] += 1
    pw = state["pw"]
    W, b = (layer.W, layer.b) if pw is None else (round_weights(layer.W, pw), round_weights(layer.b, pw))
    if isinstance(layer, Dense):
        module, name = nn.Linear(W.shape[1], W.shape[0]), f"dense{state['n']}"
        state["last_dense"] = name
    else:
        module, name = nn.Conv2d(W.shape[1], W.shape[0], tuple(W.shape[2:]), padding=layer.padding), f"conv{state['n']}"
    with torch.no_grad():
        module.weight.copy_(W), module.bias.copy_(b)
    layers[name] = module


@_torch_layer.register
def _(layer: Pool, layers, state):
    layers[f"pool{state['n']}"] = (nn.MaxPool2d if layer.kind == "max" else nn.AvgPool2d)(layer.k)


@_torch_layer.register
def _(layer: Upsample, layers, state):
    layers[f"up{state['n']}"] = nn.Upsample(scale_factor=layer.scale, mode="nearest")


@_torch_layer.register
def _(layer: Flatten, layers, state):
    layers[f"flatten{state['n']}"] = nn.Flatten()


@_torch_layer.register
def _(layer: Unflatten, layers, state):
    c, h, w = layer.shape
    order = torch.arange(c * h * w).reshape(c, h, w).permute(1, 2, 0).reshape(-1)
    dense = layers[state["last_dense"]]
    with torch.no_grad():
        dense.weight.copy_(dense.weight[order].clone()), dense.bias.copy_(dense.bias[order].clone())
    layers[f"view{state['n']}"] = ChannelsLastView(layer.shape)


@_torch_layer.register
def _(layer: Activation, layers, state):
    n = state["n"]
    module = nn.LeakyReLU(layer.slope) if layer.kind == "leaky_relu" else \
        {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[layer.kind]()
    layers[f"act{n}" if f"act{n}" not in layers else f"out{n}"] = module


def _hls4ml():
    return require("hls4ml", "hls", "Exporting to hls4ml")


def _config(hls4ml, net: nn.Sequential, shape: tuple, prec: Precision, backend: str, reuse_factor: int) -> tuple:
    """hls4ml's per-layer configuration with every precision set explicitly, and a table of them."""
    image = len(shape) == 3
    cfg = hls4ml.utils.config_from_pytorch_model(
        net, shape, granularity="name", backend=backend, default_precision=str(prec.data),
        default_reuse_factor=reuse_factor,
        channels_last_conversion="internal" if image else "full", transpose_outputs=False)
    p, wp = str(prec.data), str(prec.weight)
    wide = "auto" if prec.accum == "auto" else p
    modules = dict(net.named_children())
    table = []
    for name, layer in cfg["LayerName"].items():
        types = layer["Precision"]
        module = modules.get(name)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            types.update(weight=wp, bias=wp, accum=wide, result=wide)
        elif isinstance(module, nn.LeakyReLU):
            types.update(result=p, param=str(prec.slope(module.negative_slope)))
        elif isinstance(module, (nn.Flatten, ChannelsLastView)):
            continue
        else:
            types["result"] = p
        table.append({"layer": name, **{k: v for k, v in types.items() if k != "table"}})
    return cfg, table


def _products(module) -> int:
    return module.in_features if isinstance(module, nn.Linear) else module.weight[0].numel()


def _code_layer(g) -> str:
    """The firmware name of the layer whose output is the code (the encoder's last Dense)."""
    n = sum(layer.weighted for layer in g.layers[: g.code_at])
    return f"dense{n}" if isinstance(g.layers[g.code_at - 1], Dense) else f"conv{n}"


def _convert(f, output_dir, prec: Precision, backend: str, reuse_factor: int, io_type: str, whole: bool = False):
    """(hls4ml ModelGraph, precision table); ``whole``: the whole network with its code layer traced."""
    hls4ml = _hls4ml()
    net = hls_network(f, prec.weight, whole)
    x, _ = network_input(f, np.zeros((1, *f.layout.input_shape), np.float32))
    with contextlib.redirect_stdout(io.StringIO()):  # hls4ml prints its topology
        cfg, table = _config(hls4ml, net, tuple(x.shape[1:]), prec, backend, reuse_factor)
        if whole:
            cfg["LayerName"][_code_layer(graph(f, whole=True))]["Trace"] = True
        model = hls4ml.converters.convert_from_pytorch_model(net, hls_config=cfg, output_dir=str(output_dir),
                                                             backend=backend, io_type=io_type)
    keep = ("result", "weight", "bias", "accum", "param")
    resolved = {layer.name: {k: _ap(v.precision) for k, v in
                             ((k.replace(f"{layer.name}_", "").removesuffix("_t"), v)
                              for k, v in layer.get_layer_precision().items()) if k in keep}
                for layer in model.get_layers()}
    names = [n for n, _ in net.named_children()]
    modules = dict(net.named_children())
    for row in table:  # the types hls4ml settled on ("auto" resolved), and why a type is wider than P
        row.update(resolved.get(row["layer"], {}))
        module = modules.get(row["layer"])
        if isinstance(module, (nn.Linear, nn.Conv2d)) and prec.accum == "auto":
            i = names.index(row["layer"])
            rest = [modules[m] for m in names[i + 1:] if not isinstance(modules[m], (nn.Flatten, ChannelsLastView))]
            nxt = rest[0] if rest else None
            after = ("the output reaches the score at full width" if nxt is None else
                     "the next layer takes it at full width" if isinstance(nxt, (nn.Linear, nn.Conv2d)) else
                     f"the {type(nxt).__name__} after it casts back to P")
            row["why"] = f"accumulator and result hold the sum of {_products(module)} products exactly; {after}"
    return model, table


def _ap(precision) -> str:
    """hls4ml's 'fixed<16,6,TRN,WRAP,0>' as 'ap_fixed<16,6>' (modes shown when not the defaults)."""
    text = str(precision)
    try:
        return str(parse_precision(text.replace(",0>", ">")))
    except ConfigError:
        return text


def _compile(model, build=None) -> str | None:
    """Build the C emulation (``build()``, default ``model.compile()``); None on success, else why not."""
    if shutil.which("g++") is None:
        return "no C++ compiler (g++) on PATH: the project is written, its C emulation was not built"
    try:
        (build or model.compile)()
    except Exception as exc:  # the compiler's own message
        return f"g++ failed to build the emulation: {' '.join(str(exc).split())[:400]}"
    return None


def _traced_pass(model, f, X, p: FixedPoint) -> FirmwarePass:
    """Compile the whole network's project with its code layer traced (one g++ build) and run it on X, in
    float64 (the C model's double interface: exact for these fixed-point values)."""
    g = graph(f, whole=True)
    x, absent = network_input(f, X, p, g)
    xin = np.ascontiguousarray((x.permute(0, 2, 3, 1) if x.dim() == 4 else x).numpy())
    res = {}

    def build():
        with contextlib.redirect_stdout(io.StringIO()):  # hls4ml's trace() compiles with tracing, and says so
            res["out"], res["trace"] = model.trace(xin)

    why = _compile(model, build)
    if why:
        raise ConfigError(f"cannot emulate with hls4ml: {why}. Use aelab.export.quantize.emulate for the PyTorch "
                          "emulation.")
    out = torch.from_numpy(np.asarray(res["out"], dtype=np.float64).reshape(len(X), -1))
    if x.dim() == 4:
        n, c, h, w = x.shape
        out = out.reshape(n, h, w, c).permute(0, 3, 1, 2)
    code = torch.from_numpy(np.asarray(res["trace"][_code_layer(g)], dtype=np.float64).reshape(len(X), -1))
    return FirmwarePass(x, absent, code, out)


def _predict(model, f, X, p: FixedPoint):
    """(score, output) of the compiled hls4ml model on X, with the documented preprocessing; an image goes in
    channels-last (H, W, C) and its reconstruction comes out so."""
    g = graph(f)
    x, mask = network_input(f, X, p, g)
    xin = x.permute(0, 2, 3, 1) if x.dim() == 4 else x
    out = np.asarray(model.predict(np.ascontiguousarray(xin.float().numpy())), dtype=np.float64)
    out = torch.from_numpy(out.reshape(len(X), -1))
    if x.dim() == 4 and g.target == "reconstruction":
        n, c, h, w = x.shape
        out = out.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return firmware_score(g, x, out, mask).numpy(), out.numpy()


def hls_scores(est_or_fitted, X, precision, accum: str = "auto", output_dir=None, weight_precision=None,
               score=None):
    """Firmware scores of X from hls4ml's compiled C emulation at ``precision`` (a temporary project
    unless ``output_dir``).

    ``score``: a registered score name, or a sequence of them (then a dict name -> scores, all from one
    g++ build): the project holds the whole network (a VAE's decoder too, see
    :func:`~aelab.export.ir.graph`), its code layer is traced (hls4ml ``Trace``, read through its
    ``trace()``), and the score's head (``Fitted.head(score)``) scores the C model's fixed-point input,
    code and reconstruction in float64, as :func:`aelab.export.emulate.emulate` does with ``score=``.
    """
    import tempfile

    f = fitted_state(est_or_fitted)
    prec = Precision.of(precision, weight_precision, accum)
    if score is not None:
        names, X = check_scores(f, score), check_rows(f, X)
        _hls4ml()
        if not len(X):
            return np.empty(0) if isinstance(score, str) else {name: np.empty(0) for name in names}
        with tempfile.TemporaryDirectory(prefix="aelab-hls-") as tmp:
            model, _ = _convert(f, output_dir or Path(tmp) / "project", prec, "Vitis", 1, "io_parallel", whole=True)
            p = _traced_pass(model, f, X, prec.data)
        scores = {name: head_scores(f, p, name) for name in names}
        return scores[score] if isinstance(score, str) else scores
    with tempfile.TemporaryDirectory(prefix="aelab-hls-") as tmp:
        model, _ = _convert(f, output_dir or Path(tmp) / "project", prec, "Vitis", 1, "io_parallel")
        why = _compile(model)
        if why:
            raise ConfigError(f"cannot emulate with hls4ml: {why}. Use engine='torch' for the PyTorch emulation.")
        return _predict(model, f, np.asarray(X), prec.data)[0]


def _relative(a, b) -> dict:
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
    return {"mean": float(rel.mean()), "median": float(np.median(rel)), "p99": float(np.quantile(rel, 0.99)),
            "max": float(rel.max())}


def to_hls(est_or_fitted, output_dir, precision="ap_fixed<16,6>", reuse_factor: int = 1, io_type: str = "io_parallel",
           backend: str = "Vitis", accum: str = "auto", X=None, compile: bool = True, weight_precision=None) -> dict:
    """Write an hls4ml project of the model, build its C emulation and report parity with the float model.

    Parameters
    ----------
    est_or_fitted : a fitted Autoencoder or VAE, dense or convolutional (or its ``fitted_``)
    output_dir : path of the hls4ml project (created; an existing project is replaced)
    precision : str
        ``ap_fixed<W,I>`` (optionally with rounding and overflow modes) for the input, weights,
        biases and activation outputs; see :mod:`aelab.export.hls` for what is widened and why.
    reuse_factor, io_type, backend : hls4ml's settings (1, "io_parallel", "Vitis": lowest latency)
    accum : "auto" (wide accumulators, hls4ml's inference) or "same" (P everywhere)
    weight_precision : str, optional
        Another type for the weights and biases (such as ``ap_fixed<8,2>``: trained weights are
        smaller than activations); default ``precision``.
    X : array, optional
        Rows in the model's input units for the parity report; default 1,000 rows decoded from
        the Gaussian of the training codes.
    compile : bool
        Build the bit-accurate C emulation with g++ and report parity (default True).

    Returns
    -------
    dict: "output_dir", "precision", "layers" (per-layer precisions), "hls_model" (hls4ml's
    ModelGraph), "parity" (relative deviation of the emulated firmware score from the float
    score, and from aelab's PyTorch fixed-point emulation: mean, median, p99, max) or
    "not_compiled" (why not). The project folder also holds aelab_preprocessing.json and
    aelab_parity.json.

    Raises
    ------
    ConfigError : unparsable precision, unknown setting, or layers hls4ml cannot take (named).
    MissingDependencyError : hls4ml is not installed (``pip install 'aelab[hls]'``).
    """
    f = fitted_state(est_or_fitted)
    prec = Precision.of(precision, weight_precision, accum)
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is not known; expected one of {BACKENDS}.")
    if io_type not in IO_TYPES:
        raise ConfigError(f"io_type={io_type!r} is not known; expected one of {IO_TYPES}.")
    if isinstance(reuse_factor, bool) or not isinstance(reuse_factor, (int, np.integer)) or reuse_factor < 1:
        raise ConfigError(f"reuse_factor must be a positive integer, got {reuse_factor!r}.")
    bad = check_hls_compat(f)
    if bad:
        raise ConfigError("hls4ml cannot take this model: " + "; ".join(bad) + ".")
    _hls4ml()
    out = Path(output_dir)
    check_owned(out, "hls4ml")  # a folder of the user's is refused before any work
    if X is not None:  # the parity rows are checked before anything is converted or written
        X = check_array(X, name="the parity rows (X, --calibration)", dtype=None)
        check_sample_shape(X, tuple(f.layout.input_shape), "the model", name="the parity rows (X, --calibration)")
    report = write_owned(out, "hls4ml", lambda tmp: _write_project(f, tmp, out, prec, backend, int(reuse_factor),
                                                                     io_type, X, compile))
    report["output_dir"] = str(out)
    report["hls_model"].config.config["OutputDir"] = str(out)
    return report


def _write_project(f, tmp: Path, out: Path, prec: Precision, backend, reuse_factor, io_type, X, compile) -> dict:
    """The project in the empty folder ``tmp``, which then takes the place of ``out``."""
    model, table = _convert(f, tmp, prec, backend, reuse_factor, io_type)
    model.write()
    g = graph(f)
    target, p = g.target, prec.data
    lo, hi = p.range
    cfg = f.model_cfg
    steps = "x_q = cast<input_type>(clip((x - offset) / scale, input_range)); output = firmware(x_q)"
    per_sample = getattr(f.scaler, "pre", "none").split("+")  # intensity= steps, before the scaler
    for step, text in (("log1p", "x = sign(x) log(1 + |x|)"), ("sqrt", "x = sign(x) sqrt(|x|)"),
                       ("sum", "x = x / sum(x) over the sample (0 stays 0)")):
        if step in per_sample:
            steps = f"{text}; {steps}"
    score = ("sum over inputs of (x_q - output)^2" + (" where the raw input is not 0" if cfg.mask_zeros else "")
             if target == "reconstruction" else "sum of mu^2")
    pre = {"scaler": f.scaler.config(), "offset": np.asarray(f.scaler.offset, float).ravel().tolist(),
           "scale": np.asarray(f.scaler.scale, float).ravel().tolist(), "input_range": [lo, hi],
           "input_type": str(p), "mask_zeros": bool(cfg.mask_zeros), "output": target, "score": score,
           "steps": steps}
    if cfg.arch == "conv":
        (c, h, w), (ph, pw_) = cfg.input_shape, g.pad_hw
        pre.update(input_shape=[ph, pw_, c], layout="channels-last (H, W, C), row-major",
                   steps=f"x_s = (x - offset) / scale as (C, H, W) = ({c}, {h}, {w}); zero-pad H, W at the end to "
                         f"({ph}, {pw_}); transpose to (H, W, C); " + steps.replace("(x - offset) / scale", "x_s"),
                   score=score + (f", over the first {h} x {w} pixels" if target == "reconstruction" else ""))
        if target == "reconstruction":
            pre["output_shape"] = [ph, pw_, c]
    (tmp / "aelab_preprocessing.json").write_text(json.dumps(pre, indent=1))
    report = {"output_dir": str(out), "precision": str(p), "weight_precision": str(prec.weight), "accum": prec.accum,
              "backend": backend,
              "io_type": io_type, "reuse_factor": int(reuse_factor), "layers": table, "hls_model": model}
    if not compile:
        report["not_compiled"] = "compile=False"
        return _relocate(tmp, out, report)
    why = _compile(model)
    if why:
        report["not_compiled"] = why
        return _relocate(tmp, out, report)
    if X is None:
        rng = np.random.default_rng(0)
        Z = rng.multivariate_normal(f.latent_mean, f.latent_cov, size=1000, method="eigh").astype(np.float32)
        with torch.no_grad():
            X = f.from_net(f.model.decode(torch.from_numpy(Z).to(f.device)).cpu().numpy())
    X = np.asarray(X)
    hls, _ = _predict(model, f, X, p)
    emu = emulate(f, X, prec)
    report["parity"] = {"n": int(len(X)), "vs_float": _relative(hls, emu["float_score"]),
                        "vs_torch_emulation": _relative(hls, emu["score"]),
                        "torch_emulation_vs_float": _relative(emu["score"], emu["float_score"])}
    (tmp / "aelab_parity.json").write_text(json.dumps({k: v for k, v in report.items() if k != "hls_model"},
                                                      indent=1, default=str))
    return _relocate(tmp, out, report)


def _relocate(tmp: Path, out: Path, report: dict) -> dict:
    """hls4ml records its output folder in the project's text files: name the final one there."""
    old, new = str(tmp), str(out.resolve())
    for file in tmp.rglob("*"):
        if file.is_file() and not file.is_symlink() and file.suffix in (".yml", ".yaml", ".tcl", ".sh", ".json", ".txt") \
                and file.stat().st_size < 2**20:
            text = file.read_text(encoding="utf-8", errors="surrogateescape")
            if old in text:
                file.write_text(text.replace(old, new), encoding="utf-8", errors="surrogateescape")
    return report


def format_parity(report: dict) -> str:
    """One line per comparison of :func:`to_hls`'s parity report."""
    if "parity" not in report:
        return f"{report['precision']}: no emulation ({report.get('not_compiled')})"
    weights = "" if report["weight_precision"] == report["precision"] else f", weights {report['weight_precision']}"
    lines = [f"{report['precision']}{weights} (accumulators {report['accum']}), {report['parity']['n']} rows: "
             "relative deviation of the per-sample score"]
    for k, v in report["parity"].items():
        if isinstance(v, dict):
            lines.append(f"  {k.replace('_', ' ')}: mean {v['mean']:.3%}, median {v['median']:.3%}, "
                         f"p99 {v['p99']:.3%}, max {v['max']:.3%}")
    lines.append("layer types:")
    for row in report["layers"]:
        types = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("layer", "why"))
        lines.append(f"  {row['layer']}: {types}" + (f" ({row['why']})" if "why" in row else ""))
    return "\n".join(lines)

