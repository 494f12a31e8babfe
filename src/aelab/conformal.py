"""Decisions with guarantees: conformal p-values, thresholds, Benjamini-Hochberg, contamination.

The guarantees need one assumption, **exchangeability**: the normal rows you score and the
calibration rows are drawn the same way (for example i.i.d. from one distribution), and the
model did not train on either. Then (Bates, Candes, Lei, Romano and Sesia, "Testing for
outliers with conformal p-values", Annals of Statistics 2023):

* the conformal p-value of a fresh normal row, ``(1 + #{calibration scores >= its score}) /
  (n_cal + 1)``, satisfies ``P(p <= a) <= a`` for every ``a`` (it is uniform on
  ``{1/(n+1), ..., 1}`` when scores do not tie);
* flagging ``p <= a`` therefore has a false-positive rate of at most ``a`` on fresh normal
  rows (marginally, over the calibration draw and the row); the threshold that does this is
  an order statistic of the calibration scores (:func:`conformal_threshold`);
* Benjamini-Hochberg at level ``q`` on the p-values of a batch keeps the expected share of
  false alarms among the flags (the false discovery rate) at most ``q``: conformal p-values
  of one calibration set are positively dependent (PRDS), which is enough.

Where the calibration scores come from (see :func:`fit_calibration`): the validation rows
that ``fit`` holds out (the network never takes a gradient step on them), or any clean rows
passed to ``est.calibrate``. Early stopping chooses the epoch on the validation loss, which
makes the validation rows very slightly better reconstructed than fresh rows; the benchmark
(benchmarks/calibration.py) measures how much that moves the realised false-positive rate.

Training rows must never be calibration rows: their reconstruction is in-sample, and a
neighbour score finds the row itself at distance 0. ``fit`` keeps a 64-bit hash of every row
(:func:`row_hashes`) so that ``set_threshold`` and ``calibrate`` recognise them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._validation import check_array, is_source
from .exceptions import ConfigError, DataError

__all__ = ["pvalues", "conformal_threshold", "bh_flags", "storey_pi0", "estimate_contamination", "row_hashes",
           "fit_rows", "HASH_ROWS", "STOREY_LAMBDA"]

#: Fit-row hashes kept with a model (8 bytes each); above it a deterministic 1-in-m subset of the hashes.
HASH_ROWS = 2**22
#: Storey's lambda for conformal p-values (his default: p-values of anomalies fall below it).
STOREY_LAMBDA = 0.5
#: Tail level of the robust null used when no clean calibration rows exist (see estimate_contamination).
ROBUST_TAIL = 0.001
_HASH_BLOCK = 1 << 20  # values hashed at a time


# ---------------------------------------------------------------------- p-values and thresholds
def sorted_calibration(scores) -> np.ndarray:
    """Calibration scores as a sorted float64 array; NaN is rejected."""
    cal = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if np.isnan(cal).any():
        raise DataError("the calibration scores contain NaN: the model gives NaN on some calibration rows. "
                        "Remove rows with NaN or inf values.")
    return cal


def pvalues(scores, calibration: np.ndarray) -> np.ndarray:
    """Conformal p-values ``(1 + #{c >= s}) / (n + 1)`` of ``scores`` against sorted ``calibration``."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(calibration)
    at_least = n - np.searchsorted(calibration, s, side="left")
    return (1.0 + at_least) / (n + 1.0)


def check_rate(value, name: str) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}; e.g. {name}=0.01 for 1%.")
    return float(value)


def conformal_threshold(calibration: np.ndarray, fpr: float, stacklevel: int = 2) -> float:
    """The threshold ``t`` with ``score > t`` exactly when the conformal p-value is ``<= fpr``.

    With ``k = floor(fpr * (n + 1)) - 1`` it is the ``(n - k)``-th smallest calibration score;
    a fresh normal row then lies above it with probability ``(k + 1) / (n + 1) <= fpr``
    (no ties). Fewer than ``1 / fpr - 1`` calibration rows cannot resolve ``fpr``: the threshold
    is ``+inf`` (nothing is flagged, which keeps the guarantee), with a warning.
    """
    from .thresholds import AelabWarning

    fpr = check_rate(fpr, "fpr")
    n = len(calibration)
    k = math.floor(round(fpr * (n + 1), 9)) - 1
    if k < 0:
        warnings.warn(f"fpr={fpr:g} needs at least {math.ceil(1 / fpr) - 1} calibration rows, the model has {n}: "
                      "the threshold is +inf (nothing is flagged). Pass more clean rows to est.calibrate(X_normal) "
                      "or to set_threshold.", AelabWarning, stacklevel=stacklevel + 1)
        return math.inf
    return float(calibration[n - k - 1])


def bh_flags(p: np.ndarray, fdr: float) -> np.ndarray:
    """Benjamini-Hochberg at level ``fdr`` on the p-values of one batch (SciPy's implementation): 0/1 flags."""
    from scipy.stats import false_discovery_control

    fdr = check_rate(fdr, "fdr")
    if len(p) < 2:
        raise DataError(f"fdr=... controls the share of false alarms among the flags of a batch, and the batch has "
                        f"{len(p)} row(s). Pass a batch of at least 2 rows, or use fpr=... for single rows.")
    return (false_discovery_control(p, method="bh") <= fdr).astype(np.int64)


# ---------------------------------------------------------------------- contamination
def storey_pi0(p: np.ndarray, lam: float = STOREY_LAMBDA) -> float:
    """Storey's estimate of the share of true nulls: ``(1 + #{p > lam}) / (n (1 - lam))``, at most 1.

    Null p-values are uniform, so about ``n0 (1 - lam)`` of them exceed ``lam``; anomalies'
    p-values are small and rarely do. The ``+1`` is the finite-sample version of Storey,
    Taylor and Siegmund (2004); the estimate errs on the large side (too few anomalies).
    """
    p = np.asarray(p, dtype=np.float64)
    return float(min(1.0, (1.0 + np.count_nonzero(p > lam)) / (len(p) * (1.0 - lam))))


def _robust_null_pvalues(scores: np.ndarray) -> np.ndarray:
    """Upper-tail p-values of ``scores`` under a Gaussian fitted to the bulk of their logarithms.

    Centre: the median of the normal part; spread: the distance from its median to its upper
    quartile (the side the anomalies are on; log scores of normal rows are skewed to the right,
    so the lower half would understate it). When a share ``c`` of the rows are anomalies lying
    above the normal rows, the normal part's quantile ``u`` is the whole sample's quantile
    ``u (1 - c)``; ``c`` is re-estimated from the p-values and the quantiles re-read (a few
    fixed-point steps).
    """
    from scipy.stats import norm

    s = np.asarray(scores, dtype=np.float64)
    positive = (s > 0).mean() > 0.99
    y = np.log(np.maximum(s, 1e-300)) if positive else s
    c, p = 0.0, np.ones_like(y)
    for _ in range(10):
        q50, q75 = np.quantile(y, [0.5 * (1 - c), 0.75 * (1 - c)])
        sigma = max(q75 - q50, 1e-12 * max(1.0, abs(q50))) / 0.6745
        p = norm.sf((y - q50) / sigma)
        c_new = min(0.5, max(0.0, 1.0 - storey_pi0(p, ROBUST_TAIL)))
        if abs(c_new - c) < 1e-4:
            break
        c = c_new
    return p


def estimate_contamination(scores, calibration: np.ndarray | None = None) -> float:
    """The share of anomalies among the rows whose ``scores`` are given, in [0, 1).

    * With clean calibration scores (rows stated normal: ``novelty=True`` or
      ``est.calibrate``): ``1 - pi0`` by Storey's estimator (:func:`storey_pi0`) on the
      conformal p-values. Valid under exchangeability alone; it errs towards too few
      anomalies (anomalies whose p-value exceeds 1/2 count as normal).
    * Without (the training rows of a contaminated fit): a model of the normal scores is
      needed, because the data alone cannot tell a heavy normal tail from anomalies. The
      logarithms of the normal scores are taken as Gaussian in their bulk (median and upper
      quartile), and Storey's estimator runs on the p-values under that null with
      ``lambda = 0.001``: the share of rows beyond the null's 99.9th percentile, less the
      0.1% expected there. On 6 ODDS tables its error was 0.01 to 0.07 (benchmarks/calibration.py).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size < 2:
        raise DataError(f"estimating the contamination needs at least 2 scored rows, got {s.size}.")
    if calibration is not None:
        return 1.0 - storey_pi0(pvalues(s, calibration))
    return 1.0 - storey_pi0(_robust_null_pvalues(s), ROBUST_TAIL)


# ---------------------------------------------------------------------- recognising fit rows
_SM1, _SM2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _SM1
    x = (x ^ (x >> np.uint64(27))) * _SM2
    return x ^ (x >> np.uint64(31))


def _hash_block(block: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(block.reshape(len(block), -1), dtype=np.float64) + 0.0  # -0.0 -> 0.0
    d = v.shape[1]
    col = _mix(np.arange(d, dtype=np.uint64))  # a salt per column position
    weight = col | np.uint64(1)
    h = (_mix(v.view(np.uint64) ^ col) * weight).sum(axis=1, dtype=np.uint64)
    return _mix(h ^ np.uint64(d)).view(np.int64)


def row_hashes(X) -> np.ndarray:
    """A 64-bit hash (int64) per row of X (array or source): the row's values as float64, in order.

    The same values give the same hash whatever the dtype they arrive in (uint8 pixels and
    their float32 copy agree); two different rows collide with probability about 2^-64.
    """
    chunks = X.iter_chunks() if is_source(X) else [X]
    out = []
    with np.errstate(over="ignore"):
        for chunk in chunks:
            chunk = np.asarray(chunk)
            rows = max(1, _HASH_BLOCK // max(1, int(np.prod(chunk.shape[1:], dtype=np.int64))))
            out.extend(_hash_block(chunk[i : i + rows]) for i in range(0, len(chunk), rows))
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def keep_hashes(hashes: np.ndarray, n_rows: int) -> tuple[np.ndarray, int]:
    """(sorted unique hashes to keep, stride m): all of them up to HASH_ROWS rows, else those with h % m == 0."""
    m = max(1, math.ceil(n_rows / HASH_ROWS))
    kept = hashes if m == 1 else hashes[hashes.view(np.uint64) % np.uint64(m) == 0]
    return np.unique(kept), m


def fit_rows(X, hashes: np.ndarray | None, stride: int = 1) -> np.ndarray:
    """A boolean per row of X: True where the row was one of the rows the model was fitted on.

    With a stride m > 1 (fits of more than HASH_ROWS rows) only rows whose hash is a multiple
    of m can be checked; if most of those are fit rows, every row of X counts as one.
    """
    if hashes is None:
        return np.zeros(len(X), dtype=bool)
    if not is_source(X):
        X = check_array(X, dtype=None)
    h = row_hashes(X)
    hit = np.isin(h, hashes)
    if stride > 1:
        checked = h.view(np.uint64) % np.uint64(stride) == 0
        if checked.any() and hit[checked].mean() > 0.5:
            hit[:] = True
    return hit


# ---------------------------------------------------------------------- at fit
def validation_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """The rows (sorted) that ``fit`` held out for validation: the same split as :func:`aelab.training.validation_split`."""
    import torch

    from .training import validation_split

    val, _ = validation_split(n, float(fraction), torch.Generator(device="cpu").manual_seed(seed))
    return np.sort(val.numpy())


def fit_calibration(fitted, local, val_idx: np.ndarray, in_reference: np.ndarray | None, owner: str, comm) -> dict:
    """Calibration scores of the held-out validation rows ``val_idx`` (rows of this rank's ``local``).

    They are scored as ``fit`` scored them: a row in the neighbour reference set leaves itself
    out, so its score is at least what a fresh row's would be (conservative). Returns the
    Fitted fields ``calibration`` and ``calibration_info``.
    """
    mask = np.zeros(len(local), dtype=bool)
    mask[val_idx] = True
    ref = in_reference[val_idx] if in_reference is not None else None
    if is_source(local):
        parts, pos = [], 0
        for chunk in local.iter_masked_chunks(mask):
            r = None if ref is None else ref[pos : pos + len(chunk)]
            parts.append(fitted.scores(chunk, fitted.score, owner, r))
            pos += len(chunk)
        scores = np.concatenate(parts) if parts else np.empty(0)
    elif len(val_idx):
        scores = fitted.scores(local[val_idx], fitted.score, owner, ref)
    else:
        scores = np.empty(0)
    scores = comm.concat(np.asarray(scores, dtype=np.float64))
    if len(scores) == 0:
        return {"calibration": None, "calibration_info": {}}
    return {"calibration": sorted_calibration(scores),
            "calibration_info": {"source": "validation", "n": int(len(scores))}}


def assumption(fitted) -> str:
    """The condition under which the conformal guarantees hold, for this model's calibration rows."""
    info = fitted.calibration_info or {}
    src = {"validation": "the validation rows fit held out", "training": "PCA's training rows, in-sample",
           "calibrate": "rows passed to calibrate"}.get(info.get("source"), "unknown rows")
    if info.get("source") != "calibrate" and not info.get("clean"):
        src += "; they may hold anomalies, which makes the rule conservative"
    return (f"if normal rows are exchangeable with the {info.get('n', 0)} calibration rows ({src}) "
            "and the model did not train on them")


def guarantee_note(fitted, rule: str, level: float) -> str:
    """One sentence: what the flags under ``rule`` ("fpr" or "fdr") guarantee, and under which assumption."""
    what = ("false-positive rate on fresh normal rows <= " if rule == "fpr"
            else "expected share of false alarms among the flags (FDR) <= ")
    return f"{what}{level:g}, {assumption(fitted)}"


def fit_state(fitted, local, n: int, seed: int, fraction: float | None, novelty: bool, in_reference, owner: str,
              comm, hashes: list, contamination, calibration_rows: np.ndarray | None = None) -> dict:
    """The conformal part of a fit: calibration scores, fit-row hashes and the threshold (as Fitted fields).

    ``fraction`` is the estimator's validation fraction (None: PCA, which holds out nothing,
    and whose calibration scores are its training scores; its closed-form reconstruction is
    in-sample, a bias of order k / n). ``contamination``: a number (PyOD's percentile rule on
    the training scores) or "auto" (the estimate of :func:`estimate_contamination` on the
    training scores, then the same rule). ``calibration_rows``: a boolean per row of ``local``;
    held-out rows marked False are left out of the calibration rows (fine-tuning: rows the
    network trained on before).
    """

    all_hashes = comm.concat(np.concatenate(hashes) if hashes else np.empty(0, dtype=np.int64))
    kept, stride = keep_hashes(all_hashes, n)
    out = {"fit_hashes": kept, "fit_hash_stride": stride}
    scores = fitted.decision_scores
    if fraction is None:
        out.update(calibration=sorted_calibration(scores), calibration_info={"source": "training", "n": int(n)})
    else:
        start, _ = comm.shard(n)
        val = validation_rows(n, fraction, seed)
        val = val[(val >= start) & (val < start + len(local))] - start
        if calibration_rows is not None:
            val = val[np.asarray(calibration_rows, dtype=bool)[val]]
        out.update(fit_calibration(fitted, local, val, in_reference, owner, comm))
    if out["calibration_info"]:
        out["calibration_info"]["clean"] = bool(novelty)
    out.update(contamination_threshold(scores, contamination))
    return out


def contamination_threshold(scores: np.ndarray, contamination, calibration: np.ndarray | None = None) -> dict:
    """The threshold rule by contamination, one for fit, fine-tuning and ``set_threshold``: a share (PyOD's
    ``1 - contamination`` percentile of ``scores``) or "auto" (:func:`auto_threshold`; ``calibration``:
    clean calibration scores to estimate it against). Returns the Fitted fields."""
    from .thresholds import threshold_from_contamination

    if contamination == "auto":
        return auto_threshold(scores, calibration)
    return {"threshold": float(threshold_from_contamination(scores, contamination)),
            "threshold_rule": {"contamination": float(contamination), "n": int(len(scores))}}


# ---------------------------------------------------------------------- the estimators' methods
def require_calibration(fitted, what: str) -> np.ndarray:
    if fitted.calibration is None or len(fitted.calibration) == 0:
        raise ConfigError(f"{what} needs calibration scores of rows the network did not train on, and this model has "
                          "none (fitted with validation_fraction=0, or saved by an older aelab). Call "
                          "est.calibrate(X_normal) with clean rows that were not part of the fit.")
    return fitted.calibration


def warn_fit_rows(fitted, X) -> None:
    """Warn when an in-memory X holds rows of the fit: their scores are in-sample, their p-values too large."""
    from .thresholds import AelabWarning

    if is_source(X) or fitted.fit_hashes is None:
        return  # a streamed X is not read a second time for this check
    seen = fit_rows(X, fitted.fit_hashes, fitted.fit_hash_stride)
    if seen.any():
        warnings.warn(f"{int(seen.sum())} of the {len(seen)} rows of X were part of the fit: their scores are "
                      "in-sample, so their p-values are too large and they are flagged too rarely. The guarantees "
                      "hold for rows the model was not fitted on.", AelabWarning, stacklevel=3)


def check_rule(fpr, fdr) -> None:
    """Validate predict's ``fpr`` / ``fdr`` before any scoring."""
    if fpr is not None and fdr is not None:
        raise ConfigError(f"predict takes fpr=... or fdr=..., not both; got fpr={fpr!r}, fdr={fdr!r}.")
    if fpr is not None:
        check_rate(fpr, "fpr")
    if fdr is not None:
        check_rate(fdr, "fdr")


def flags(fitted, scores: np.ndarray, fpr=None, fdr=None) -> np.ndarray:
    """0/1 flags of ``scores``: conformal p-value ``<= fpr``, or Benjamini-Hochberg at ``fdr`` on the batch."""
    p = pvalues(scores, require_calibration(fitted, "predict(X, fpr=...) or predict(X, fdr=...)"))
    if fpr is not None:
        return (p <= check_rate(fpr, "fpr")).astype(np.int64)
    return bh_flags(p, fdr)


def calibrated(fitted, X, score_fn, owner: str):
    """``fitted`` with the calibration scores of the clean rows X (fit rows among them are left out)."""
    from .thresholds import AelabWarning

    from ._validation import check_sample_shape

    if is_source(X):
        n_x, shape = len(X), tuple(X.shape)
    else:
        X = check_array(X, dtype=None, name="X_normal")
        n_x, shape = X.shape[0], X.shape
    check_sample_shape(np.empty((0, *shape[1:])), fitted.layout.input_shape, owner, name="X_normal")
    scores = score_fn(X)
    seen = fit_rows(X, fitted.fit_hashes, fitted.fit_hash_stride)
    if seen.any():
        if seen.all():
            raise DataError(f"all {n_x} rows of X_normal were part of the fit: their scores are in-sample "
                            "(optimistic), so they cannot calibrate. Pass clean rows the model was not fitted on.")
        warnings.warn(f"{int(seen.sum())} of the {n_x} rows of X_normal were part of the fit; they are left out of "
                      "the calibration rows (their scores are in-sample).", AelabWarning, stacklevel=4)
        scores = scores[~seen]
    cal = sorted_calibration(scores)
    return fitted.replace(calibration=cal, calibration_info={"source": "calibrate", "n": int(len(cal)), "clean": True})


def fpr_threshold(fitted, X, fpr: float, score_fn) -> dict:
    """``set_threshold(X, fpr=...)``: the threshold and its rule, never computed on in-sample scores.

    * X None: the conformal threshold of the calibration scores;
    * rows of X that were fit rows: left out, and the calibration scores added in their place
      (conformal threshold on the union, with a warning);
    * X of fresh rows only: the order-statistic rule of :func:`aelab.thresholds.threshold_from_fpr`
      on their scores, as before.
    """
    from .thresholds import AelabWarning, threshold_from_fpr

    fpr = check_rate(fpr, "fpr")
    have_cal = fitted.calibration is not None and len(fitted.calibration) > 0
    if X is None:
        if not have_cal:
            warnings.warn("this model has no calibration scores, so the threshold comes from the training scores, "
                          "which are in-sample: fresh normal rows will be flagged more often than fpr. Call "
                          "est.calibrate(X_normal) or pass held-out normal rows.", AelabWarning, stacklevel=4)
            return {"threshold": float(threshold_from_fpr(fitted.decision_scores, fpr)),
                    "threshold_rule": {"fpr": fpr, "n": int(len(fitted.decision_scores))}}
        return {"threshold": conformal_threshold(fitted.calibration, fpr, stacklevel=4),
                "threshold_rule": {"fpr": fpr, "n": int(len(fitted.calibration)), "rule": "conformal",
                                   "scores": "calibration"}}
    scores = score_fn(X)
    seen = fit_rows(X, fitted.fit_hashes, fitted.fit_hash_stride)
    if not seen.any():
        return {"threshold": float(threshold_from_fpr(scores, fpr)),
                "threshold_rule": {"fpr": fpr, "n": int(len(scores))}}
    if not have_cal:
        warnings.warn(f"{int(seen.sum())} of the {len(seen)} rows of X were part of the fit: their scores are "
                      "in-sample, and the model has no calibration scores to replace them. Fresh normal rows will "
                      "be flagged more often than fpr; call est.calibrate(X_normal) first.",
                      AelabWarning, stacklevel=4)
        return {"threshold": float(threshold_from_fpr(scores, fpr)),
                "threshold_rule": {"fpr": fpr, "n": int(len(scores))}}
    warnings.warn(f"{int(seen.sum())} of the {len(seen)} rows of X were part of the fit (in-sample scores are "
                  f"optimistic); they were replaced by the model's {len(fitted.calibration)} calibration rows, which "
                  "it did not train on.", AelabWarning, stacklevel=4)
    union = sorted_calibration(np.concatenate([scores[~seen], fitted.calibration]))
    return {"threshold": conformal_threshold(union, fpr, stacklevel=4),
            "threshold_rule": {"fpr": fpr, "n": int(len(union)), "rule": "conformal",
                               "scores": "calibration" if seen.all() else "X and calibration"}}


def auto_threshold(scores: np.ndarray, calibration: np.ndarray | None = None) -> dict:
    """``contamination="auto"``: the estimated share ``c`` of anomalies among ``scores`` (see
    :func:`estimate_contamination`; ``calibration``: clean calibration scores) and the threshold
    that flags that share of them (PyOD's percentile rule; nothing when ``c`` is 0)."""
    from .thresholds import threshold_from_contamination

    c = estimate_contamination(scores, calibration)
    t = threshold_from_contamination(scores, min(c, 0.5)) if c > 0 else float(np.max(scores))
    return {"threshold": float(t), "contamination_estimate": float(c),
            "threshold_rule": {"contamination": "auto", "estimate": float(c), "n": int(len(scores))}}
