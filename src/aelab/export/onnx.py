"""The whole anomaly score as one ONNX graph, int8 quantisation, and ONNX Runtime as a scoring engine.

:func:`export_onnx` writes one self-contained ``.onnx`` file (no external data) whose graph
takes the user's raw rows, float32 of shape ``(batch, *input_shape)`` in the units of fit
(the batch size is free), and returns one of :data:`OUTPUTS`:

* ``"score"``: what ``decision_function`` returns, float64 ``(batch,)``: the fitted scaler,
  the network and the very score head Python scores with (:mod:`aelab.heads`), its fitted
  statistics as constants (the code Gaussian's mean and precision, the training means of the
  reconstruction terms, the reference rows of the neighbour scores with one matrix product and
  a top-k). The VAE is evaluated at z = mu;
* ``"reconstruction"``: ``reconstruct``, float32 in the input's shape and units;
* ``"latent"``: ``transform``, float32 ``(batch, latent_dim)``;
* ``"attribution"``: ``explain(X, method="error").contributions``, float64 in the input's shape:
  the exact decomposition of the score over the inputs (:func:`aelab.explain.error_attribution`),
  so that a deployed model explains its own flags.

The model's properties (``metadata_props``) hold :func:`metadata`: aelab version, score,
threshold and its rule, input name, shape, dtype and feature count. The score is the same
module as Python's (float64 where it is float64), so ONNX Runtime agrees with torch to about
1e-7 relative (tests/test_export_onnx.py asserts 1e-5).

:func:`quantize_int8` makes an int8 copy with ONNX Runtime's quantisation: dynamic (weights
int8, activations quantised per batch at run time) for dense networks, static (activation
ranges from calibration rows) for convolutional ones; the score's own arithmetic stays in
float. :func:`int8_cost` measures what that costs: AUROC and TPR at FPR 1e-3 / 1e-4 of the
int8 model against the float one, how much the scores move, file sizes and speed.

:func:`onnx_scores` scores data through ONNX Runtime chunk by chunk (the "onnxruntime"
engine of ``aelab score`` / ``evaluate``); :func:`pick_engine` states the "auto" rule.

onnx, onnxruntime and onnxscript are the extra ``aelab[onnx]``, imported only here, inside
the functions.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._validation import check_array, check_sample_shape, is_source
from ..exceptions import ConfigError, DataError, require
from ..fitted import EVAL_ROWS, Fitted
from ..scoring import check_score, fitted_score, neighbour_score

__all__ = ["OUTPUTS", "ENGINES", "export_onnx", "onnx_model", "metadata", "quantize_int8", "int8_cost",
           "format_int8_cost", "onnx_session", "run_session", "onnx_scores", "pick_engine", "ScoreGraph"]

OUTPUTS = ("score", "reconstruction", "latent", "attribution")
ENGINES = ("torch", "onnxruntime", "auto")
INPUT_NAME = "input"
OPSET = 18
HEAD = "head_"  # the score head's name in the graph: nodes that read its constants are never quantised
CALIBRATION_ROWS = 512  # rows of calibration data static quantisation reads (the first ones)
#: "auto" engine: ONNX Runtime for a CPU model of this architecture with at least this many rows.
#: Exporting and starting the session cost ~1.2 s in a fresh process; ONNX Runtime's speed recovers
#: it after ~1,000 rows of the MNIST conv model and 20,000-110,000 rows of the 57-feature dense
#: model with the neighbour score (benchmarks/deploy.py, batch 4096, 1 thread; see docs/export.md).
AUTO_MIN_ROWS = {"conv": 2_000, "dense": 150_000}
ORT_PURPOSE = "Exporting to ONNX and scoring with ONNX Runtime"


def require_onnx(module: str):
    return require(module, "onnx", ORT_PURPOSE)


def as_fitted(obj) -> Fitted:
    """A :class:`Fitted` from itself or from a fitted estimator (its ``fitted_``)."""
    if isinstance(obj, Fitted):
        return obj
    if hasattr(type(obj), "fitted_"):
        return obj.fitted_  # NotFittedError when not fitted
    raise ConfigError(f"expected a fitted aelab estimator or an aelab.fitted.Fitted, got {type(obj).__name__}.")


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not known; expected one of {tuple(allowed)}.")


# ---------------------------------------------------------------------------------- the graph
class ScoreGraph(nn.Module):
    """Raw rows -> scaler -> network -> ``output``: the module :func:`onnx_model` exports (CPU, eval mode)."""

    def __init__(self, fitted: Fitted, output: str = "score", score: str | None = None):
        super().__init__()
        _check_choice("output", output, OUTPUTS)
        f = fitted
        self.output, self.score = output, score or f.score
        if output in ("score", "attribution"):
            check_score(self.score, bool(f.model_cfg.variational), "this model")
        self.layout, self.net_shape, self.recon_kind = f.layout, f.net_shape, f.recon_kind
        self.model = copy.deepcopy(f.model).cpu().eval()
        self.per_column = f.scaler.offset.size > 1
        self.pre = getattr(f.scaler, "pre", "none").split("+")  # Scaler's per-sample steps (pre_transform)
        self.register_buffer("offset", torch.from_numpy(f.scaler.offset.astype(np.float32)))
        self.register_buffer("scale", torch.from_numpy(f.scaler.scale.astype(np.float32)))
        if output == "reconstruction":  # Scaler.inverse_transform works in float64
            self.register_buffer("offset64", torch.from_numpy(f.scaler.offset.astype(np.float64)))
            self.register_buffer("scale64", torch.from_numpy(f.scaler.scale.astype(np.float64)))
        if output == "score":  # the score head Python scores with, its statistics as the graph's constants
            self.head_ = copy.deepcopy(f.head(self.score)).cpu().eval()
        self.floats, self.tensors = {}, []
        if output == "attribution" and fitted_score(self.score):
            for name, v in f.score_stats().items():  # ConfigError for folders without the statistics
                if name == "knn_ref":
                    if not neighbour_score(self.score):
                        continue
                    # knn_distance's centring, once: |x - c - r|^2 = |x - c|^2 + (-2 r) . (x - c) + |r|^2
                    ref = v.detach().float().cpu()
                    centre = ref.mean(dim=0)
                    ref = ref - centre
                    self._const("knn_centre", centre)
                    self._const("knn_ref_t", (-2.0 * ref).T.contiguous())
                    self._const("knn_ref_sq", ref.square().sum(dim=1))
                    self._const("knn_ref_c", ref)  # the neighbours' rows themselves
                elif torch.is_tensor(v):
                    self._const(name, v.detach().cpu())
                else:
                    self.floats[name] = v
            if neighbour_score(self.score) and "knn_k" not in self.floats:
                raise ConfigError(f"score={self.score!r} needs reference rows kept at fit, which this model has "
                                  f"not (its default score is {f.score!r}). Fit with anomaly_score={self.score!r}, "
                                  "or export another score.")

    def _const(self, name: str, value: torch.Tensor) -> None:
        self.register_buffer(HEAD + name, value)
        self.tensors.append(name)

    def _stats(self) -> dict:
        return {**self.floats, **{k: getattr(self, HEAD + k) for k in self.tensors}}

    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        """Fitted.to_net: Scaler.transform (float32 input) and Layout.to_net."""
        shape = self.layout.input_shape
        if "sum" in self.pre:
            total = x.reshape(x.shape[0], -1).sum(dim=1).reshape(-1, *([1] * len(shape)))
            x = x / torch.where(total != 0, total, torch.ones_like(total))
        if "sqrt" in self.pre:
            x = torch.sign(x) * torch.sqrt(torch.abs(x))
        elif "log1p" in self.pre:
            x = torch.sign(x) * torch.log1p(torch.abs(x))
        if self.per_column:
            x = ((x.reshape(-1, self.offset.numel()) - self.offset) / self.scale).reshape(-1, *shape)
        else:
            x = (x - self.offset) / self.scale
        if self.layout.channels_last:  # (n, h, w, c) -> (n, c, h, w)
            x = x.permute(0, 3, 1, 2)
        return x.reshape(-1, *self.net_shape)

    def _from_net(self, x: torch.Tensor) -> torch.Tensor:
        """Fitted.from_net: Layout.from_net and Scaler.inverse_transform (float64 arithmetic)."""
        if self.layout.channels_last:
            x = x.reshape(-1, *self.layout.image_shape).permute(0, 2, 3, 1)
        shape = self.layout.input_shape
        x = x.reshape(-1, *shape).to(torch.float64)
        if self.per_column:
            x = (x.reshape(-1, self.offset64.numel()) * self.scale64 + self.offset64).reshape(-1, *shape)
        else:
            x = x * self.scale64 + self.offset64
        if "sqrt" in self.pre:
            x = torch.sign(x) * x.square()
        elif "log1p" in self.pre:
            x = torch.sign(x) * (torch.exp(torch.abs(x)) - 1.0)  # expm1 has no ONNX operator
        return x.to(torch.float32)

    def _neighbours(self, x: torch.Tensor):
        """(x - r for the k nearest reference rows r, d_k), ranked and measured as the score head does."""
        xc = x.reshape(x.shape[0], -1) - getattr(self, HEAD + "knn_centre")
        part = xc @ getattr(self, HEAD + "knn_ref_t") + getattr(self, HEAD + "knn_ref_sq")
        k = min(int(self.floats["knn_k"]), part.shape[1])
        idx = part.topk(k, dim=1, largest=False).indices
        diff = xc[:, None, :] - getattr(self, HEAD + "knn_ref_c")[idx]
        d2 = diff.square().sum(-1, dtype=torch.float64)
        return diff.to(torch.float64), d2.sqrt().mean(dim=1)

    def _attribution(self, xs: torch.Tensor) -> torch.Tensor:
        from ..explain import error_attribution

        stats = self._stats() if fitted_score(self.score) else None
        a = error_attribution(self.model, xs, self.score, self.recon_kind, stats,
                              neighbours=self._neighbours if neighbour_score(self.score) else None)
        if self.layout.channels_last:
            a = a.reshape(-1, *self.layout.image_shape).permute(0, 2, 3, 1)
        return a.reshape(-1, *self.layout.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self._to_net(x)
        if self.output == "latent":
            return self.model.encode(xs)[0]
        if self.output == "attribution":
            return self._attribution(xs)
        out = self.model(xs, sample=False)
        if self.output == "reconstruction":
            return self._from_net(out.x_hat)
        return self.head_(xs, out)


def metadata(fitted: Fitted, output: str = "score", score: str | None = None) -> dict[str, str]:
    """The model properties an exported file carries (all strings; JSON where structured)."""
    from .._version import __version__

    f, score = fitted, score or fitted.score
    cfg = f.model_cfg
    kind = "pca" if cfg.kind == "pca" else f"{'vae' if cfg.variational else 'autoencoder'} {cfg.arch}"
    meta = {"aelab_version": __version__, "model": kind, "output": output, "input_name": INPUT_NAME,
            "input_dtype": "float32", "input_shape": json.dumps(list(f.layout.input_shape)),
            "n_features": str(f.layout.n_features), "input_kind": f.layout.kind,
            "channels_last": json.dumps(f.layout.channels_last), "latent_dim": str(cfg.latent_dim)}
    if output in ("score", "attribution"):
        meta["score"] = score
        if score == f.score and output == "score":  # the threshold belongs to the default score
            meta["threshold"] = repr(float(f.threshold))
            meta["threshold_rule"] = json.dumps(f.threshold_rule)
            if f.calibration is not None and len(f.calibration):  # conformal p-values: (1 + #{c >= s}) / (n + 1)
                meta["calibration_scores"] = json.dumps([float(v) for v in f.calibration])
                meta["calibration"] = json.dumps(f.calibration_info)
    return meta


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's deprecation warnings and its logging (missing torchvision ops, ...) stay out of the output."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        logger.setLevel(level)


def onnx_model(fitted, output: str = "score", score: str | None = None, *, dynamo: bool = True,
               opset: int = OPSET):
    """The exported graph as an ``onnx.ModelProto`` with :func:`metadata`, checked by ``onnx.checker``.

    ``dynamo``: torch.onnx's dynamo exporter (default) or the legacy TorchScript one (faster
    to run, deprecated by torch); both give the same graph arithmetic.
    """
    f = as_fitted(fitted)
    graph = ScoreGraph(f, output, score)
    onnx = require_onnx("onnx")
    x = torch.zeros(2, *f.layout.input_shape)
    names = {"input_names": [INPUT_NAME], "output_names": [output], "opset_version": opset}
    with _quiet_exporter(), torch.no_grad():
        if dynamo:
            require_onnx("onnxscript")
            program = torch.onnx.export(graph, (x,), dynamo=True, external_data=False, verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
            proto = program.model_proto
        else:
            buf = io.BytesIO()
            torch.onnx.export(graph, (x,), buf, dynamo=False, dynamic_axes={INPUT_NAME: {0: "batch"},
                                                                            output: {0: "batch"}}, **names)
            proto = onnx.load_from_string(buf.getvalue())
    for i, node in enumerate(proto.graph.node):  # quantisation excludes nodes by name
        node.name = node.name or f"{node.op_type}_{i}"
    proto.producer_name, proto.producer_version = "aelab", metadata(f)["aelab_version"]
    proto.doc_string = f"aelab {output}: raw input (batch, {', '.join(map(str, f.layout.input_shape))}) float32"
    onnx.helper.set_model_props(proto, metadata(f, output, score))
    onnx.checker.check_model(proto)
    return proto


def check_onnx_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise DataError(f"cannot write {str(path)!r}: an ONNX model file name ends in .onnx, e.g. model.onnx.")
    if path.is_dir():
        raise DataError(f"cannot write {str(path)!r}: it is a folder. Give a file name such as {path / 'model.onnx'}.")
    if not path.parent.is_dir():
        raise DataError(f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist. Create it first.")
    return path


def _save(proto, path: Path) -> None:
    from ..io._common import atomic_path

    onnx = require_onnx("onnx")
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)


def export_onnx(fitted, path, output: str = "score", score: str | None = None, *, dynamo: bool = True,
                opset: int = OPSET) -> Path:
    """Write ``fitted`` (a Fitted or a fitted estimator) as one ONNX file at ``path``, atomically.

    The graph maps raw rows, float32 ``(batch, *input_shape)``, to ``output`` (see the module
    docstring); ``score`` overrides the default score (``score_``). Returns the path.
    """
    _check_choice("output", output, OUTPUTS)
    path = check_onnx_path(path)
    _save(onnx_model(fitted, output, score, dynamo=dynamo, opset=opset), path)
    return path


# ---------------------------------------------------------------------------------- ONNX Runtime
def onnx_session(model, threads: int | None = None):
    """An ONNX Runtime CPU session for a file path, bytes or ModelProto; ``threads``: intra-op threads
    (default: torch's current setting, so both engines run on the same cores)."""
    ort = require_onnx("onnxruntime")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def _raw_chunks(X, input_shape: tuple, owner: str):
    """``(n_rows, iterator)`` over float32 chunks of X in the user's layout, validated as Fitted.batches does."""
    if is_source(X):
        if tuple(X.shape[1:]) != tuple(input_shape):
            check_sample_shape(np.empty((0, *X.shape[1:])), input_shape, owner)

        def chunks():
            for chunk in X.iter_chunks():
                chunk = check_array(chunk, name="a chunk of X", dtype=None)
                for i in range(0, chunk.shape[0], EVAL_ROWS):
                    yield np.ascontiguousarray(chunk[i : i + EVAL_ROWS], dtype=np.float32)

        return len(X), chunks()
    Xv = check_array(X, dtype=None)
    check_sample_shape(Xv, tuple(input_shape), owner)
    return Xv.shape[0], (np.ascontiguousarray(Xv[i : i + EVAL_ROWS], dtype=np.float32)
                         for i in range(0, Xv.shape[0], EVAL_ROWS))


def _input_shape(session) -> tuple:
    meta = session.get_modelmeta().custom_metadata_map
    if "input_shape" in meta:
        return tuple(json.loads(meta["input_shape"]))
    return tuple(session.get_inputs()[0].shape[1:])


def run_session(session, X, owner: str = "the ONNX model") -> np.ndarray:
    """Run ``session`` on X (array or chunked source) EVAL_ROWS rows at a time and stack the output."""
    n, chunks = _raw_chunks(X, _input_shape(session), owner)
    name = session.get_inputs()[0].name
    out, pos = None, 0
    for chunk in chunks:
        r = session.run(None, {name: chunk})[0]
        if out is None:
            out = np.empty((n, *r.shape[1:]), dtype=r.dtype)
        out[pos : pos + len(r)] = r
        pos += len(r)
    return out if out is not None else np.empty((0,), dtype=np.float64)


def onnx_scores(fitted, X, score: str | None = None, owner: str = "model", threads: int | None = None,
                dynamo: bool = False) -> np.ndarray:
    """``decision_function(X, score)`` through ONNX Runtime: the model exported in memory, X scored chunk by chunk.

    The legacy exporter is the default here: it builds the same graph in a tenth of the time.
    """
    f = as_fitted(fitted)
    session = onnx_session(onnx_model(f, "score", score, dynamo=dynamo), threads)
    return run_session(session, X, owner).astype(np.float64, copy=False)


def pick_engine(engine: str, fitted, n_rows: int) -> str:
    """The engine that scores: "torch" or "onnxruntime".

    "auto" takes ONNX Runtime when its extra is installed, the model runs on the CPU and X has
    at least :data:`AUTO_MIN_ROWS` rows for its architecture (fewer: the export costs more than
    it saves); torch otherwise. "onnxruntime" without the extra raises a MissingDependencyError.
    """
    _check_choice("engine", engine, ENGINES)
    if engine == "onnxruntime":
        for module in ("onnx", "onnxruntime"):
            require_onnx(module)
        return engine
    f = as_fitted(fitted)
    arch = "dense" if f.model_cfg.kind == "pca" else f.model_cfg.arch
    if engine == "torch" or f.device.type != "cpu" or n_rows < AUTO_MIN_ROWS[arch]:
        return "torch"
    import importlib

    try:
        for module in ("onnx", "onnxruntime"):
            importlib.import_module(module)
    except ImportError:
        return "torch"
    return "onnxruntime"


# ---------------------------------------------------------------------------------- int8
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
