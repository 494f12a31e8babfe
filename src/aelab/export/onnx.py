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

The int8 part lives in :mod:`aelab.export.int8`, ONNX Runtime sessions and file checks in
:mod:`aelab.export.runtime`; this module re-exports their public names.

:func:`onnx_scores` scores data through ONNX Runtime chunk by chunk (the "onnxruntime"
engine of ``aelab score`` / ``evaluate``); :func:`pick_engine` states the "auto" rule.

onnx, onnxruntime and onnxscript are the extra ``aelab[onnx]``, imported only here, inside
the functions.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError
from ..fitted import Fitted
from ..kinds import kind_of
from ..neighbours import knn_indices
from ..scoring import fitted_score, neighbour_score
from ..preprocess import Preprocess
from .int8 import CALIBRATION_ROWS, format_int8_cost, int8_cost, quantize_int8  # noqa: F401 (re-exported)
from .runtime import (HEAD, INPUT_NAME, ORT_PURPOSE, _quiet_exporter, _save, check_onnx_path,  # noqa: F401
                      onnx_session, require_onnx, run_session)

__all__ = ["OUTPUTS", "ENGINES", "export_onnx", "onnx_model", "metadata", "quantize_int8", "int8_cost",
           "format_int8_cost", "onnx_session", "run_session", "onnx_scores", "pick_engine", "ScoreGraph"]

OUTPUTS = ("score", "reconstruction", "latent", "attribution")
ENGINES = ("torch", "onnxruntime", "auto")
OPSET = 18
#: "auto" engine: ONNX Runtime for a CPU model of this architecture with at least this many rows.
#: Exporting and starting the session cost ~1.2 s in a fresh process; ONNX Runtime's speed recovers
#: it after ~1,000 rows of the MNIST conv model and 20,000-110,000 rows of the 57-feature dense
#: model with the neighbour score (benchmarks/deploy.py, batch 4096, 1 thread; see docs/export.md).
AUTO_MIN_ROWS = {"conv": 2_000, "dense": 150_000}


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
            kind_of(f.model_cfg).check_score(self.score, "this model")
        self.layout, self.net_shape, self.recon_kind = f.layout, f.net_shape, f.recon_kind
        self.model = copy.deepcopy(f.model).cpu().eval()
        self.prep = Preprocess.of(f)  # the module Python's Fitted.to_net / from_net run
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

    def _neighbours(self, x: torch.Tensor):
        """(x - r for the k nearest reference rows r, d_k), ranked and measured as the score head does."""
        xc = x.reshape(x.shape[0], -1) - getattr(self, HEAD + "knn_centre")
        idx = knn_indices(xc, getattr(self, HEAD + "knn_ref_t"), getattr(self, HEAD + "knn_ref_sq"),
                          int(self.floats["knn_k"]), int(self.floats.get("knn_bags") or 1))
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
        xs = self.prep(x)
        if self.output == "latent":
            return self.model.encode(xs)[0]
        if self.output == "attribution":
            return self._attribution(xs)
        out = self.model(xs, sample=False)
        if self.output == "reconstruction":
            return self.prep.inverse(out.x_hat)
        return self.head_(xs, out)


def metadata(fitted: Fitted, output: str = "score", score: str | None = None) -> dict[str, str]:
    """The model properties an exported file carries (all strings; JSON where structured)."""
    from .._version import __version__

    f, score = fitted, score or fitted.score
    cfg = f.model_cfg
    kind = kind_of(cfg).describe(cfg)
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
    arch = kind_of(f.model_cfg).network_arch(f.model_cfg)
    if engine == "torch" or f.device.type != "cpu" or n_rows < AUTO_MIN_ROWS[arch]:
        return "torch"
    import importlib

    try:
        for module in ("onnx", "onnxruntime"):
            importlib.import_module(module)
    except ImportError:
        return "torch"
    return "onnxruntime"


