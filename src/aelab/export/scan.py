"""The bit-width scan: AUROC and TPR at a false-positive rate of the firmware score against the
fixed-point width, relative to float, with da4ml's adder-cost estimate per width; its table and plot."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import torch

from ..exceptions import ConfigError, DataError, require
from .emulate import check_rows, firmware_graph, firmware_scores, float_outputs
from .fixed import FixedPoint, Precision
from .ir import fitted_state, graph, integer_bits_for, weight_integer_bits as _weight_bits

__all__ = ["bit_scan", "smallest_width", "adder_cost", "format_scan", "plot_scan", "profile_integer_bits"]


def profile_integer_bits(f, g, X) -> int:
    """Integer bits (sign included) that hold the largest weight and 99.99% of the inputs and layer outputs of the
    float model on (up to 40,000 rows of) X: rare larger inputs saturate, rare larger activations wrap."""
    from .emulate import ROWS

    vals = [torch.cat([t.abs().flatten() for t in outs]) for outs in float_outputs(f, g, X, until=20 * ROWS)]
    big = float(torch.quantile(torch.cat(vals)[:2**24], 0.9999)) if vals else 0.0
    return max(integer_bits_for(big), _weight_bits(g))


def adder_cost(est_or_fitted, precision, weight_precision=None) -> dict:
    """da4ml's estimate of the adder cost of the network's constant matrix-vector products at ``precision``
    (extra ``hls``: da4ml, the distributed-arithmetic strategy of hls4ml).

    Each Dense layer (a convolution: its kernel as a (C_in * k * k) x C_out matrix, the cost of one output
    pixel) is handed to ``da4ml.cmvm.solve`` with its weights as the firmware holds them
    (:func:`~aelab.export.fixed.cast_weights`) and its inputs in the precision's range and step. Returns
    ``{"layers": [cost per layer], "total": sum}`` in da4ml's cost units (adder bits, roughly LUTs). An
    estimate: biases, activations, the latent layer's wide inputs and everything around the arithmetic are
    left out.
    """
    cmvm = _require_da4ml()
    prec = Precision.of(precision, weight_precision)
    q = firmware_graph(graph(fitted_state(est_or_fitted)), prec)
    lo, hi = prec.data.range
    costs = []
    for layer in q.weighted:
        kernel = layer.W.reshape(len(layer.W), -1).T.numpy().astype(np.float32)  # (inputs, outputs)
        if not kernel.any():
            costs.append(0.0)
            continue
        sol = cmvm.solve(kernel, qintervals=[(lo, hi, prec.data.lsb)] * kernel.shape[0])
        costs.append(float(sol.cost))
    return {"layers": costs, "total": float(sum(costs))}


_adder_cost = adder_cost  # bit_scan's argument of the same name hides it there


def _require_da4ml():
    require("da4ml", "hls", "The adder-cost estimate")
    return require("da4ml.cmvm", "hls", "The adder-cost estimate")


def _has_da4ml() -> bool:
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
    accum : "auto" or "same", see :mod:`aelab.export.emulate`
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
    f = fitted_state(est_or_fitted)
    X = check_rows(f, X)
    y = np.asarray(y).ravel()
    if len(y) != len(X):
        raise DataError(f"y has {len(y)} labels but X has {len(X)} rows; pass one 0/1 label per row.")
    if engine not in ("torch", "hls4ml"):
        raise ConfigError(f"engine={engine!r} is not known; expected 'torch' or 'hls4ml'.")
    bits = [int(b) for b in bits]
    if not bits or min(bits) < 2 or max(bits) > 32:
        raise ConfigError(f"bits must be widths between 2 and 32, got {bits!r}.")
    g = graph(f)
    if integer_bits == "auto":
        integer_bits = profile_integer_bits(f, g, X)
    if weight_integer_bits not in ("same", "auto") and not isinstance(weight_integer_bits, (int, np.integer)):
        raise ConfigError(f"weight_integer_bits must be 'same', 'auto' or an integer, got {weight_integer_bits!r}.")
    wi = {"same": None, "auto": _weight_bits(g)}.get(weight_integer_bits, weight_integer_bits)
    if adder_cost not in (True, False, "auto"):
        raise ConfigError(f"adder_cost must be True, False or 'auto', got {adder_cost!r}.")
    costs = adder_cost is True or (adder_cost == "auto" and _has_da4ml())
    if costs:
        _require_da4ml()
    models = {"": f, **{name: fitted_state(m) for name, m in (others or {}).items()}}
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
