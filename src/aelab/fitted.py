"""Everything ``fit`` learns, in one object, and how to apply it to data.

``fit`` computes a :class:`Fitted` in local variables and assigns it to the estimator
in one statement at the end, so a fit that fails leaves the estimator as it was (the
previous model, or unfitted). The estimators' public fitted attributes (``model_``,
``scaler_``, ``threshold_``, ...) are read-only views of it; persistence writes and
reads it (:meth:`Fitted.to_state`, :meth:`Fitted.from_state`) without importing an
estimator class.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ._columns import check_feature_names
from ._validation import check_array, check_sample_shape, is_source, iter_checked_chunks
from .config import ModelConfig
from .exceptions import ConfigError, DataError
from .layout import Layout
from .preprocessing import RunningStats, Scaler
from .heads import HEADS, Latent, build_head, knn_distance, latent_precision, mahalanobis
from .neighbours import knn_reference, reference_rows  # noqa: F401 (the reference rows of the neighbour scores)
from .scoring import FITTED_SCORES, RECON_MEAN_SCORES, fitted_score, neighbour_score

__all__ = ["Fitted", "EVAL_ROWS", "post_fit_statistics"]

EVAL_ROWS = 4096  # rows per forward pass when scoring or encoding


@dataclass(frozen=True, eq=False)
class Fitted:
    """The fitted state of one estimator (frozen: a change makes a new object)."""

    layout: Layout
    scaler: Scaler
    model_cfg: ModelConfig
    model: nn.Module
    device: torch.device
    recon_kind: str                    # "mse" or "bce": the reconstruction term of the VAE's ELBO
    score: str                         # the resolved default anomaly score
    latent_mean: np.ndarray            # Gaussian of the training codes (or PCA's principal coordinates)
    latent_cov: np.ndarray
    recon_means: np.ndarray | None     # training means of RECON_MEAN_SCORES (None: an old model folder)
    decision_scores: np.ndarray        # the default score of every training row
    threshold: float
    threshold_rule: dict
    history: dict = field(default_factory=dict)
    n_epochs_config: int | None = None
    knn_ref: np.ndarray | None = None  # reference rows (scaled, flattened) of the "knn" scores
    knn_k: int | None = None           # neighbours averaged
    knn_bags: int = 1                  # knn_ref is this many equal bags; the distance is averaged over them
    knn_mean: float | None = None      # training mean of the neighbour distance ...
    knn_mean_sq: float | None = None   # ... and of its square
    forest: dict | None = None         # isolation forest on the training codes (aelab.forest.fit_forest)
    input_forest: dict | None = None   # ... and on the training inputs (the score "isolation")
    term_stats: dict | None = None     # a fusion score's terms: {term: (training mean, std, sorted values)}
    calibration: np.ndarray | None = None  # sorted default scores of rows the network did not train on (conformal)
    calibration_info: dict = field(default_factory=dict)  # where they come from: {"source", "n"}
    fit_hashes: np.ndarray | None = None   # sorted 64-bit hashes of the fit rows (aelab.conformal.row_hashes)
    fit_hash_stride: int = 1               # > 1: only hashes that are multiples of it are kept
    contamination_estimate: float | None = None  # contamination="auto": the estimated share of anomalies
    feature_names: tuple | None = None  # column names seen at fit (all strings), checked at scoring
    emission_log_density: np.ndarray | None = None  # images: -log blurred share of training images lighting each pixel
    spectrum: tuple | None = None  # images: (-log p_jk (pixels, bins), lo, width) of "spectrum" (aelab.heads.Spectrum)
    _heads: dict = field(default_factory=dict, init=False, repr=False)  # score -> its head, built once

    # ------------------------------------------------------------------ derived values
    @property
    def net_shape(self) -> tuple:
        return tuple(self.model_cfg.input_shape)

    def replace(self, **changes) -> "Fitted":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ running the network
    @functools.cached_property
    def preprocess(self):
        """The :class:`~aelab.preprocess.Preprocess` module of this model (scaler and layout), built once."""
        from .preprocess import Preprocess

        return Preprocess.of(self)

    @torch.no_grad()
    def to_net(self, X: np.ndarray) -> np.ndarray:
        """Raw rows -> the network's input (float32, contiguous), by the preprocessing module."""
        from .preprocess import as_tensor

        return self.preprocess(as_tensor(X)).numpy()

    @torch.no_grad()
    def from_net(self, Xs: np.ndarray) -> np.ndarray:
        """Network outputs back to the user's shape and units."""
        from .preprocess import as_tensor

        return self.preprocess.inverse(as_tensor(np.asarray(Xs, np.float32))).numpy()

    def batches(self, X, owner: str) -> tuple[int, Any]:
        """``(n_rows, iterator)`` over network-layout float32 chunks of X (array or source).

        An in-memory X is validated here, before the iterator starts; named columns are checked
        against those seen at fit.
        """
        check_feature_names(X, self.feature_names, owner)
        if is_source(X):
            if tuple(X.shape[1:]) != self.layout.input_shape:
                check_sample_shape(np.empty((0, *X.shape[1:])), self.layout.input_shape, owner)

            # chunks of whole EVAL_ROWS blocks: a streamed row meets the same batch as in memory (float32
            # products are blocked by batch), so the scores are the same bit for bit, however X is read
            aligned = max(EVAL_ROWS, int(getattr(X, "chunk_rows", EVAL_ROWS)) // EVAL_ROWS * EVAL_ROWS)

            def chunks():
                for chunk in iter_checked_chunks(X, chunk_rows=aligned):
                    for i in range(0, chunk.shape[0], EVAL_ROWS):
                        yield self.to_net(chunk[i : i + EVAL_ROWS])

            return len(X), chunks()
        Xv = check_array(X, dtype=None)
        check_sample_shape(Xv, self.layout.input_shape, owner)
        return Xv.shape[0], (self.to_net(Xv[i : i + EVAL_ROWS]) for i in range(0, Xv.shape[0], EVAL_ROWS))

    @torch.no_grad()
    def map(self, X, fn: Callable, owner: str, dtype=None) -> np.ndarray:
        """Apply ``fn`` to every network batch of X and stack the results (fn may return None).

        Results are written into one array allocated up front: keeping thousands of small
        per-batch arrays alive between the large transient blocks of a streamed pass
        fragmented glibc's heap and grew resident memory by ~1 GB over 5 million rows.
        """
        self.model.eval()
        n, batches = self.batches(X, owner)
        out, pos = None, 0
        for b in batches:
            r = fn(torch.from_numpy(b).to(self.device))
            if r is None:
                continue
            r = r.cpu().numpy()
            if out is None:
                out = np.empty((n, *r.shape[1:]), dtype=dtype or r.dtype)
            out[pos : pos + len(r)] = r
            pos += len(r)
        return out if out is not None else np.empty((0,), dtype=dtype or np.float32)

    def score_stats(self) -> dict:
        """Tensors the fitted scores need (see :mod:`aelab.scoring`), on the model's device."""
        if self.recon_means is None:
            raise ConfigError("this model has no recon_means_ (saved by an older aelab); the scores "
                              f"{FITTED_SCORES} are not available for it. Refit it, or pass score='mse'.")
        stats = {"latent_mean": torch.as_tensor(self.latent_mean, dtype=torch.float64).to(self.device),
                 "latent_precision": latent_precision(self.latent_cov).to(self.device)}
        for name, v in zip(RECON_MEAN_SCORES, np.asarray(self.recon_means, dtype=np.float64)):
            stats[name] = float(v) if v > 0 else 1.0
        if self.knn_ref is not None:
            stats["knn_ref"] = torch.as_tensor(self.knn_ref, dtype=torch.float32).to(self.device)
            stats["knn_k"] = int(self.knn_k)
            stats["knn_bags"] = int(self.knn_bags)
            stats["knn_mean"] = float(self.knn_mean) if self.knn_mean and self.knn_mean > 0 else 1.0
            stats["knn_mean_sq"] = float(self.knn_mean_sq) if self.knn_mean_sq and self.knn_mean_sq > 0 else 1.0
        if self.emission_log_density is not None:
            from .preprocess import Preprocess

            stats["emission_log_density"] = torch.as_tensor(self.emission_log_density,
                                                            dtype=torch.float64).to(self.device)
            stats["preprocess"] = Preprocess.of(self).to(self.device)  # its own copy: a head may move it
        if self.spectrum is not None:
            stats["spectrum"] = (torch.as_tensor(self.spectrum[0], dtype=torch.float64).to(self.device),
                                 *self.spectrum[1:])
        if self.forest is not None:
            stats["forest"] = self.forest
        if self.input_forest is not None:
            stats["input_forest"] = self.input_forest
        if self.term_stats is not None:
            stats["term_stats"] = self.term_stats
        return stats

    def head_stats(self) -> dict:
        """The fitted statistics the score heads are built from (:func:`aelab.heads.build_head`)."""
        from .preprocess import Preprocess

        if self.recon_means is None:
            raise ConfigError("this model has no recon_means_ (saved by an older aelab); the scores "
                              f"{FITTED_SCORES} are not available for it. Refit it, or pass score='mse'.")
        return {"latent_mean": self.latent_mean, "latent_cov": self.latent_cov, "recon_kind": self.recon_kind,
                "recon_means": dict(zip(RECON_MEAN_SCORES, np.asarray(self.recon_means, dtype=np.float64).tolist())),
                "knn_ref": self.knn_ref, "knn_k": self.knn_k, "knn_bags": self.knn_bags, "knn_mean": self.knn_mean,
                "knn_mean_sq": self.knn_mean_sq, "emission_log_density": self.emission_log_density,
                "spectrum": self.spectrum,
                "preprocess": Preprocess.of(self),  # its own copy: a head may move it
                "forest": self.forest, "input_forest": self.input_forest, "term_stats": self.term_stats}

    def head(self, score: str) -> nn.Module:
        """The score head of ``score`` (:mod:`aelab.heads`) on the model's device, built once."""
        if score not in self._heads:
            stats = self.head_stats() if HEADS.get(score) is not None and HEADS[score].fitted else \
                {"recon_kind": self.recon_kind}
            self._heads[score] = build_head(score, stats).to(self.device).eval()
        return self._heads[score]

    def scores(self, X, score: str, owner: str, in_reference: np.ndarray | None = None) -> np.ndarray:
        """Scores of every row of X; ``in_reference`` (training data only): a boolean per row marking the
        reference rows of the "knn" scores, which must not count themselves as their own neighbour."""
        head = self.head(score)
        mask_of = reference_masks(in_reference)

        def fn(x):
            return head(x, self.model(x, sample=False), mask_of(x))

        return self.map(X, fn, owner, np.float64)

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(JSON-able config, named CPU tensors) that :meth:`from_state` turns back into this object."""
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        arrays = {"scaler.offset": self.scaler.offset, "scaler.scale": self.scaler.scale,
                  "decision_scores": self.decision_scores, "latent_mean": self.latent_mean,
                  "latent_cov": self.latent_cov, "recon_means": self.recon_means, "knn_ref": self.knn_ref,
                  "calibration_scores": self.calibration, "fit_row_hashes": self.fit_hashes,
                  "emission_log_density": self.emission_log_density,
                  "spectrum_log_density": None if self.spectrum is None else self.spectrum[0]}
        from .forest import OPTIONAL_TABLES, TABLES

        for name, forest in (("forest", self.forest), ("input_forest", self.input_forest)):
            if forest is not None:
                arrays.update({f"{name}.{k}": forest[k] for k in TABLES + OPTIONAL_TABLES if k in forest})
        for k, v in (self.term_stats or {}).items():
            arrays[f"term_sorted.{k}"] = v[2]
        tensors.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if v is not None})
        config = {
            "model": self.model_cfg.to_dict(), "scaler": self.scaler.config(),
            "fitted": {
                "input_kind": self.layout.kind, "input_shape": list(self.layout.input_shape),
                "channels_last": self.layout.channels_last, "recon_kind": self.recon_kind, "score": self.score,
                "threshold": float(self.threshold), "threshold_rule": self.threshold_rule,
                "history": self.history, "n_epochs_config": self.n_epochs_config,
                "knn_k": self.knn_k, **({} if self.knn_bags == 1 else {"knn_bags": int(self.knn_bags)}),
                "knn_mean": None if self.knn_mean is None else float(self.knn_mean),
                "knn_mean_sq": None if self.knn_mean_sq is None else float(self.knn_mean_sq),
                **{name: {"depth": int(forest["depth"]), "c": float(forest["c"])}
                   for name, forest in (("forest", self.forest), ("input_forest", self.input_forest))
                   if forest is not None},
                **({} if self.spectrum is None else {"spectrum": {"lo": float(self.spectrum[1]),
                                                                  "width": float(self.spectrum[2])}}),
                **({} if self.term_stats is None else {"term_stats": {k: [float(v[0]), float(v[1])] for k, v
                                                                      in self.term_stats.items()}}),
                "calibration": self.calibration_info, "fit_hash_stride": int(self.fit_hash_stride),
                "contamination_estimate": self.contamination_estimate,
                "feature_names": None if self.feature_names is None else list(self.feature_names),
            },
        }
        return config, tensors

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor], device: torch.device,
                   anomaly_score: str) -> "Fitted":
        """The inverse of :meth:`to_state`; ``anomaly_score`` (the estimator's parameter) resolves the
        default score of folders that predate ``score_``."""
        from .models import build_model
        from .scoring import resolve_score

        fitted = config["fitted"]
        shape = tuple(int(v) for v in fitted["input_shape"])
        # folders written before input_kind existed: every array of 2+ dims per sample was an image
        kind = fitted.get("input_kind") or ("image" if len(shape) >= 2 else "table")
        layout = Layout(kind, shape, bool(fitted["channels_last"]))
        model_cfg = ModelConfig.from_dict(config["model"])
        scaler = Scaler.from_state(config["scaler"], {"offset": tensors["scaler.offset"].numpy(),
                                                      "scale": tensors["scaler.scale"].numpy()})
        model = build_model(model_cfg)
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(state, strict=True)
        out = cls(layout=layout, scaler=scaler, model_cfg=model_cfg, model=model.to(device).eval(), device=device,
                   recon_kind=fitted["recon_kind"],
                   score=fitted.get("score") or resolve_score(anomaly_score, config["scaler"]["kind"],
                                                              table=kind == "table" and "knn_ref" in tensors),
                   latent_mean=tensors["latent_mean"].numpy(), latent_cov=tensors["latent_cov"].numpy(),
                   recon_means=tensors["recon_means"].numpy() if "recon_means" in tensors else None,
                   decision_scores=tensors["decision_scores"].numpy(), threshold=float(fitted["threshold"]),
                   threshold_rule=fitted["threshold_rule"], history=fitted["history"],
                   n_epochs_config=fitted.get("n_epochs_config"),
                   knn_ref=tensors["knn_ref"].numpy() if "knn_ref" in tensors else None,
                   knn_k=fitted.get("knn_k"), knn_bags=int(fitted.get("knn_bags") or 1), knn_mean=fitted.get("knn_mean"),
                   knn_mean_sq=fitted.get("knn_mean_sq"),
                   forest=_forest_of(fitted, tensors, "forest"), input_forest=_forest_of(fitted, tensors, "input_forest"),
                   term_stats=None if "term_stats" not in fitted else {
                       k: (*v, tensors[f"term_sorted.{k}"].numpy()) for k, v in fitted["term_stats"].items()},
                   calibration=tensors["calibration_scores"].numpy() if "calibration_scores" in tensors else None,
                   calibration_info=fitted.get("calibration") or {},
                   fit_hashes=tensors["fit_row_hashes"].numpy() if "fit_row_hashes" in tensors else None,
                   emission_log_density=(tensors["emission_log_density"].numpy()
                                         if "emission_log_density" in tensors else None),
                   spectrum=None if "spectrum" not in fitted or "spectrum_log_density" not in tensors else (
                       tensors["spectrum_log_density"].numpy(), fitted["spectrum"]["lo"], fitted["spectrum"]["width"]),
                   fit_hash_stride=int(fitted.get("fit_hash_stride") or 1),
                   contamination_estimate=fitted.get("contamination_estimate"),
                   feature_names=tuple(fitted["feature_names"]) if fitted.get("feature_names") else None)
        if out.knn_ref is not None and (out.knn_bags < 1 or len(out.knn_ref) % out.knn_bags):
            raise ValueError(f"{len(out.knn_ref)} reference rows do not split into {out.knn_bags} bags")
        from .kinds import kind_of

        kind_of(model_cfg).check_score(out.score, "this model")  # a damaged or foreign name: at load, not later
        return out


def post_fit_statistics(model: nn.Module, X, map_fn: Callable, score: str, recon_kind: str,
                        latent_gaussian: Callable | None = None, comm=None) -> dict:
    """One pass over the training data: the code Gaussian, the reconstruction means, the training scores.

    ``map_fn(X, fn, dtype)`` runs ``fn`` on every network batch of X (see :meth:`Fitted.map`).
    In memory the per-sample codes and reconstruction scores are kept and the fitted
    scores combined from them by the head's own formula (:meth:`aelab.heads.Sum.combine`; no second
    pass). A streamed source keeps nothing per sample (bounded memory); its fitted
    training scores need a second streamed pass, which the caller makes.
    ``latent_gaussian()`` overrides the Gaussian (PCA's is its own).
    Returns a dict with latent_mean, latent_cov, recon_means and decision_scores (None when
    a second pass is needed). Data-parallel (``comm``), X is this rank's shard: the code
    statistics are merged and the sums added over ranks, and the scores gathered in row order.
    """
    from .comm import Comm

    comm = comm or Comm()
    spec = HEADS[score]
    keep = not is_source(X) and not neighbour_score(score) and not spec.emission and not spec.forest and \
        not spec.input_forest and not spec.terms
    direct = not fitted_score(score)
    codes, recon = [], []
    acc = {"r": 0.0, "codes": RunningStats(covariance=True)}

    recon_heads = [build_head(s) for s in RECON_MEAN_SCORES]
    direct_head = build_head(score, {"recon_kind": recon_kind}) if direct else None

    def collect(x):
        out = model(x)
        z = (out.mu if out.mu is not None else out.z).cpu()
        r = torch.stack([h(x, out) for h in recon_heads], 1).cpu()
        acc["codes"].update(z.numpy())
        acc["r"] = acc["r"] + r.sum(0).numpy()
        if keep:
            codes.append(z)
            recon.append(r)
        return direct_head.to(x.device)(x, out) if direct else None

    direct_scores = map_fn(X, collect, np.float64)
    codes_stats = comm.merge(acc["codes"])
    acc["r"] = comm.sum(acc["r"])
    n = codes_stats.n
    if latent_gaussian is not None:
        mean, cov = latent_gaussian()
    else:  # merged chunk by chunk (Chan et al.), stable where sum(z z^T) - n m m^T is not
        mean = codes_stats.mean
        cov = np.atleast_2d(codes_stats.m2 / max(n - 1, 1))
    out = {"latent_mean": mean, "latent_cov": cov, "recon_means": acc["r"] / n, "decision_scores": None}
    if direct:
        out["decision_scores"] = comm.concat(direct_scores)
    elif keep:  # the head's own formula on the terms kept from the pass: no second pass
        Z, R = torch.cat(codes), torch.cat(recon)
        head = build_head(score, {"latent_mean": mean, "latent_cov": cov, "recon_kind": recon_kind,
                                  "recon_means": dict(zip(RECON_MEAN_SCORES, out["recon_means"].tolist()))})
        latent = head if isinstance(head, Latent) else next(h for h in head.parts if isinstance(h, Latent))
        values = {"latent": mahalanobis(Z, latent.mean, latent.precision),
                  **{s: R[:, i] for i, s in enumerate(RECON_MEAN_SCORES)}}
        scores = values["latent"] if isinstance(head, Latent) else head.combine(values)
        out["decision_scores"] = comm.concat(scores.numpy())
    return out


def _forest_of(fitted: dict, tensors: dict, name: str) -> dict | None:
    """The forest tables saved under ``name`` ("forest": on the codes, "input_forest": on the inputs), or None."""
    from .forest import TABLES

    if name not in fitted:
        return None
    out = {**fitted[name], **{k[len(name) + 1:]: v.numpy() for k, v in tensors.items() if k.startswith(name + ".")}}
    missing = [k for k in (*TABLES, "depth", "c") if k not in out]
    if missing or len({out[k].shape for k in TABLES}) != 1:
        raise KeyError(f"the {name} tables are incomplete or of different shapes (missing: {missing})")
    return out


def reference_masks(in_reference: np.ndarray | None):
    """``mask_of(x)``: for the batches of one in-order pass over the training rows, the slice of
    ``in_reference`` (a boolean per row: a reference row of the "knn" scores) that marks the batch's rows,
    on its device; None throughout when there is no such mask."""
    pos = [0]

    def mask_of(x: torch.Tensor):
        if in_reference is None:
            return None
        mask = torch.from_numpy(in_reference[pos[0] : pos[0] + len(x)]).to(x.device)
        pos[0] += len(x)
        return mask

    return mask_of


@torch.no_grad()
def forest_state(fitted: "Fitted", X, n: int, seed: int, comm=None) -> dict:
    """The isolation forest of the "iforest" scores (:func:`aelab.forest.fit_forest`), fitted on the codes of up
    to :data:`aelab.forest.FOREST_ROWS` training rows drawn by ``seed`` (the same rows whether X is an array or
    a streamed source, and on any number of ranks)."""
    from .forest import FOREST_ROWS, fit_forest

    ref, _ = reference_rows(X, fitted.to_net, n, seed, FOREST_ROWS, comm)
    fitted.model.eval()
    x = torch.from_numpy(ref).reshape(len(ref), *fitted.net_shape).to(fitted.device)
    z = torch.cat([fitted.model(x[i : i + EVAL_ROWS], sample=False).z.float().cpu()
                   for i in range(0, len(x), EVAL_ROWS)])
    return fit_forest(z.numpy(), seed)


def input_forest_state(fitted: "Fitted", X, n: int, seed: int, comm=None) -> dict:
    """The isolation forest of the "isolation" scores, fitted on up to :data:`aelab.forest.FOREST_ROWS`
    training rows drawn by ``seed`` in the network's layout (scaled, flattened), as :func:`forest_state` draws
    them: scikit-learn's IsolationForest on the rows themselves, held as tables."""
    from .forest import FOREST_ROWS, fit_forest

    return fit_forest(reference_rows(X, fitted.to_net, n, seed, FOREST_ROWS, comm)[0], seed)


#: training values kept per term for the rank fusions (all of them up to this many rows, else as many quantiles)
TERM_SORTED_ROWS = 4096


@torch.no_grad()
def term_statistics(fitted: "Fitted", X, terms: tuple, owner: str, in_reference=None, comm=None) -> dict:
    """{term: (mean, std, sorted values)} of the scores ``terms`` over the training rows X (this rank's shard;
    gathered over ranks), a reference row's own zero neighbour distance left out (``in_reference``). The
    sorted values are all of them up to :data:`TERM_SORTED_ROWS` rows, else that many evenly spaced quantiles."""
    from .comm import Comm

    comm = comm or Comm()
    stats = fitted.head_stats()
    heads = [build_head(t, stats).to(fitted.device).eval() for t in terms]
    mask_of = reference_masks(in_reference)

    def fn(x):
        out, mask = fitted.model(x, sample=False), mask_of(x)
        return torch.stack([h(x, out, mask).double() for h in heads], 1)

    values = comm.concat(fitted.map(X, fn, owner, np.float64).reshape(-1, len(terms)))
    out = {}
    for t, v in zip(terms, values.T):
        mean, std = float(v.mean()) if len(v) else 1.0, float(v.std()) if len(v) else 1.0
        v = np.sort(v)
        if len(v) > TERM_SORTED_ROWS:
            v = np.quantile(v, (np.arange(TERM_SORTED_ROWS) + 0.5) / TERM_SORTED_ROWS)
        out[t] = (mean if mean > 0 else 1.0, std if std > 0 else 1.0, np.ascontiguousarray(v))
    return out


def check_latent(Z, latent_dim: int) -> np.ndarray:
    Z = check_array(Z, name="Z", allow_images=False)
    if Z.shape[1] != latent_dim:
        raise DataError(f"Z has {Z.shape[1]} columns, but the model's latent space has {latent_dim} dimensions.")
    return Z
