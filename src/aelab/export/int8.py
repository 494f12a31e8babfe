"""int8 copies of an exported ONNX model, and what int8 costs.

:func:`quantize_int8` quantises with ONNX Runtime: dynamic (weights int8, activations
quantised per batch at run time) for dense networks, static (activation ranges from
calibration rows) for convolutional ones; the score's own arithmetic stays in float.
:func:`int8_cost` measures the cost: AUROC and TPR at FPR 1e-3 / 1e-4 of the int8 model
against the float one, how much the scores move, file sizes and speed. ``aelab.export.onnx``
re-exports these names.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .._validation import check_array, check_sample_shape
from ..exceptions import ConfigError, DataError
from ..fitted import EVAL_ROWS
from .runtime import HEAD, INPUT_NAME, _quiet_exporter, _save, check_onnx_path, onnx_session, require_onnx, run_session

__all__ = ["CALIBRATION_ROWS", "quantize_int8", "int8_cost", "format_int8_cost"]

CALIBRATION_ROWS = 512  # rows of calibration data static quantisation reads (the first ones)


def _head_nodes(proto) -> list[str]:
    """Nodes reading the score's constants (directly or through a Transpose/Cast of them): kept in float."""
    consts = {i.name for i in proto.graph.initializer if i.name.startswith(HEAD)}
    head = []
    for node in proto.graph.node:
        if any(i in consts for i in node.input):
            head.append(node.name)
            consts.update(o for o in node.output if node.op_type in ("Transpose", "Cast", "Identity"))
    return head


def _is_conv(proto) -> bool:
    return any(n.op_type == "Conv" for n in proto.graph.node)


class _Calibration:
    """onnxruntime.quantization.CalibrationDataReader over raw calibration rows, 64 at a time."""

    def __init__(self, rows: np.ndarray):
        self._batches = iter([{INPUT_NAME: rows[i : i + 64]} for i in range(0, len(rows), 64)])

    def get_next(self):
        return next(self._batches, None)


def quantize_int8(src, dst, calibration=None) -> Path:
    """Write an int8 copy of the ONNX file ``src`` at ``dst`` (atomically); returns ``dst``.

    Dense networks: dynamic quantisation (8-bit weights of every MatMul/Gemm, per output
    channel; activations quantised per batch at run time; no data needed). Convolutional networks: static QDQ
    quantisation of Conv/MatMul/Gemm (int8 weights per channel, int8 activations whose ranges
    are the min-max over ``calibration``: raw rows in the model's input shape, the first
    :data:`CALIBRATION_ROWS` of them are read). The score's own arithmetic (scaler, statistics,
    neighbour distances) stays in float.
    """
    onnx = require_onnx("onnx")
    require_onnx("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), check_onnx_path(dst)
    proto = onnx.load(str(src))
    conv = _is_conv(proto)
    if conv:
        if calibration is None:
            raise ConfigError("int8 quantisation of a convolutional model is static: it needs calibration rows "
                              "(normal data in the model's input shape; calibration=X, or --calibration DATA).")
        shape = tuple(json.loads({p.key: p.value for p in proto.metadata_props}.get("input_shape", "null")) or ())
        rows = check_array(calibration[:CALIBRATION_ROWS], name="calibration", dtype=None)
        if shape:
            check_sample_shape(rows, shape, "the ONNX model", name="calibration")
        rows = np.ascontiguousarray(rows, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)  # shape inference
        head = _head_nodes(onnx.load(str(pre)))
        head += [f"{n}_MatMul" for n in head]  # the names dynamic quantisation gives a Gemm it turns into a MatMul
        if conv:
            quantize_static(str(pre), str(out), _Calibration(rows), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=head,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        else:
            # uint8 weights per output channel: the u8 x s8 kernels of CPUs without VNNI saturate (ORT's
            # documented caveat); on the 57-feature model of benchmarks/deploy.py int8 weights lost 40% of
            # the TPR at FPR 1e-3, uint8 ones per channel none
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QUInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=head)
        q = onnx.load(str(out))
        del q.metadata_props[:]
        onnx.helper.set_model_props(q, {**{p.key: p.value for p in proto.metadata_props},
                                        "quantization": "int8 static QDQ (calibrated)" if conv else "int8 dynamic"})
        _save(q, dst)
    return dst


def _rows_per_second(session, X: np.ndarray) -> tuple[float, float]:
    """(rows per second at batches of EVAL_ROWS, seconds per row at batch 1 (median of up to 200 rows))."""
    name = session.get_inputs()[0].name
    session.run(None, {name: X[: min(len(X), EVAL_ROWS)]})  # warm-up
    t = time.perf_counter()
    for i in range(0, len(X), EVAL_ROWS):
        session.run(None, {name: X[i : i + EVAL_ROWS]})
    rate = len(X) / max(time.perf_counter() - t, 1e-9)
    times = []
    for i in range(min(len(X), 200)):
        t = time.perf_counter()
        session.run(None, {name: X[i : i + 1]})
        times.append(time.perf_counter() - t)
    return rate, float(np.median(times))


def int8_cost(float_model, int8_model, X, y=None, threads: int | None = None) -> dict:
    """What int8 costs, measured on X (raw rows) and, when given, 0/1 labels y (1 = anomaly).

    Returns file sizes (bytes), speed (rows/s at batches of 4096 and seconds per row at batch
    1) of both, how much the scores move (median and max relative change; the share of rows
    whose flag at the model's threshold changes) and, with labels, AUROC and the TPR at FPR
    1e-3 and 1e-4 of both models; an FPR is measured only when the data hold at least 1/FPR
    normal rows (otherwise its entry says how many it needs).
    """
    from ..metrics import roc_auc, tpr_at_fpr

    X = np.ascontiguousarray(check_array(X, dtype=None), dtype=np.float32)
    sessions = {"float": onnx_session(float_model, threads), "int8": onnx_session(int8_model, threads)}
    if sessions["float"].get_outputs()[0].name != "score":
        raise ConfigError("int8_cost compares scores: export the model with output='score'.")
    scores = {k: run_session(s, X).astype(np.float64) for k, s in sessions.items()}
    rel = np.abs(scores["int8"] - scores["float"]) / np.maximum(np.abs(scores["float"]), 1e-12)
    meta = sessions["float"].get_modelmeta().custom_metadata_map
    out = {"rows": int(len(X)), "threads": int(threads or torch.get_num_threads()),
           "float_bytes": os.path.getsize(float_model), "int8_bytes": os.path.getsize(int8_model),
           "median_rel_change": float(np.median(rel)), "max_rel_change": float(rel.max())}
    if "threshold" in meta:
        thr = float(meta["threshold"])
        out["flag_changes"] = float(np.mean((scores["int8"] > thr) != (scores["float"] > thr)))
    for k, s in sessions.items():
        out[f"{k}_rows_per_s"], out[f"{k}_s_per_row_batch1"] = _rows_per_second(s, X)
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(X):
            raise DataError(f"labels have {len(y)} rows but the data has {len(X)}; pass one label per row.")
        n_normal = int(np.sum(y == 0))
        for k in sessions:
            out[f"{k}_auroc"] = float(roc_auc(y, scores[k]))
        out["auroc_delta"] = out["int8_auroc"] - out["float_auroc"]
        for fpr in (1e-3, 1e-4):
            for k in sessions:
                out[f"{k}_tpr_at_fpr_{fpr:g}"] = (float(tpr_at_fpr(y, scores[k], fpr)) if fpr * n_normal >= 1 else
                                                  f"n/a: needs {math.ceil(1 / fpr):,} normal rows, has {n_normal:,}")
    return out


def format_int8_cost(cost: dict) -> str:
    """The cost of int8 as a few readable lines."""
    lines = [f"file size: float {cost['float_bytes'] / 1024:,.1f} KiB, int8 {cost['int8_bytes'] / 1024:,.1f} KiB "
             f"({cost['int8_bytes'] / cost['float_bytes']:.0%})",
             f"speed ({cost['threads']} threads): float {cost['float_rows_per_s']:,.0f} rows/s, "
             f"{cost['float_s_per_row_batch1'] * 1e6:.1f} us/row at batch 1; int8 {cost['int8_rows_per_s']:,.0f} "
             f"rows/s, {cost['int8_s_per_row_batch1'] * 1e6:.1f} us/row at batch 1",
             f"scores on {cost['rows']:,} rows: median relative change {cost['median_rel_change']:.2e}, "
             f"max {cost['max_rel_change']:.2e}"
             + (f"; {cost['flag_changes']:.2%} of rows change side of the threshold" if "flag_changes" in cost else "")]
    if "float_auroc" in cost:
        lines.append(f"AUROC: float {cost['float_auroc']:.4f}, int8 {cost['int8_auroc']:.4f} "
                     f"(delta {cost['auroc_delta']:+.4f})")
        for fpr in (1e-3, 1e-4):
            a, b = cost[f"float_tpr_at_fpr_{fpr:g}"], cost[f"int8_tpr_at_fpr_{fpr:g}"]
            lines.append(f"TPR at FPR {fpr:g}: " + (f"float {a:.4f}, int8 {b:.4f} (delta {b - a:+.4f})"
                                                   if isinstance(a, float) else a))
    return "\n".join(lines)
