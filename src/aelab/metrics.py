"""Detection metrics with exact, documented definitions, their uncertainties, and clustering scores.

Conventions: labels ``y`` are 0 (normal, negative) and 1 (anomaly, positive); scores are
higher for more anomalous samples; a sample is flagged when ``score > threshold``
(strictly greater, as PyOD's ``predict`` and :mod:`aelab.thresholds`). Scores may be
``+inf``; NaN and ``-inf`` are rejected.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.special import ndtri
from scipy.stats import binomtest, rankdata

from ._validation import _to_numpy
from .exceptions import ConfigError, DataError
from .thresholds import _check_rate, _check_scores, _fpr_threshold

__all__ = [
    "OperatingPoint",
    "roc_curve",
    "roc_auc",
    "average_precision",
    "operating_point",
    "tpr_at_fpr",
    "roc_auc_ci",
    "tpr_at_fpr_ci",
    "clustering_scores",
]


class OperatingPoint(NamedTuple):
    """A threshold and the counts it gives (see :func:`operating_point`)."""

    threshold: float  #: flag where score > threshold
    tpr: float  #: n_tp / n_pos
    fpr: float  #: achieved false-positive rate n_fp / n_neg (never above the target)
    n_tp: int
    n_pos: int
    n_fp: int
    n_neg: int


def _check_binary(y: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (y as bool, scores as float64) after checking labels, lengths and both classes."""
    s = _check_scores(scores, "scores")
    y = _to_numpy(y)
    if y.ndim != 1:
        raise DataError(f"y must be 1-D (one label per sample); got shape {y.shape}.")
    if y.shape[0] != s.shape[0]:
        raise DataError(f"y and scores must have the same length; got {y.shape[0]} labels and {s.shape[0]} scores.")
    values = np.unique(y)
    if y.dtype.kind not in "biuf" or not np.isin(values, [0, 1]).all():
        shown = values[:10].tolist()
        raise DataError(
            f"y must contain only 0 (normal) and 1 (anomaly); got values {shown}"
            f"{' ...' if values.size > 10 else ''}. "
            "Map your labels first, e.g. y = (labels == anomaly_label).astype(int)."
        )
    y = y.astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        missing = "anomalies (1)" if n_pos == 0 else "normal samples (0)"
        raise DataError(f"y has no {missing}: ROC and precision metrics need both classes present.")
    return y, s


def _roc_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tp, fp) counts of ``score >= v`` for each distinct score v, descending."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # last index of each tie group
    tps = np.cumsum(y)[last]
    return tps, last + 1 - tps, s[last]


def roc_curve(y: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with every operating point kept: (fpr, tpr, thresholds).

    Point ``i`` is obtained by flagging ``score > thresholds[i]``: ``thresholds`` holds
    the distinct scores in decreasing order followed by ``-inf``, so the curve starts at
    ``(0, 0)`` (threshold = the maximum score, nothing flagged) and ends at ``(1, 1)``.
    Samples tied at a score enter together, so a tie group between positives and
    negatives gives one diagonal step.

    For plotting on a log-FPR axis nothing is dropped (scikit-learn's default
    ``drop_intermediate=True`` removes points that are collinear on linear axes, which
    are not collinear on a log axis, and loses the low-FPR detail that matters there).
    Points with ``fpr == 0``, including the highest TPR reached with no false positive,
    cannot be placed on a log axis: plot ``fpr > 0`` and keep in mind that the smallest
    FPR the sample resolves is ``1 / n_neg``::

        keep = fpr > 0
        ax.semilogx(fpr[keep], tpr[keep])      # or ax.semilogy(tpr[keep], 1 / fpr[keep])

    The (fpr, tpr) points are those of ``sklearn.metrics.roc_curve(...,
    drop_intermediate=False)``; the thresholds differ because scikit-learn flags
    ``score >= threshold``.

    Parameters
    ----------
    y : array_like of {0, 1}, shape (n,)
        1 for anomalies (positives), 0 for normal samples; both must be present.
    scores : array_like, shape (n,)
        Anomaly scores, higher = more anomalous.

    Returns
    -------
    fpr, tpr : ndarray of shape (m + 1,)
        False- and true-positive rates, non-decreasing; ``m`` is the number of distinct scores.
    thresholds : ndarray of shape (m + 1,)
        Decreasing; flag where ``score > thresholds[i]``.

    Raises
    ------
    DataError
        Labels other than 0/1, a single class, different lengths, NaN or -inf scores.
    """
    y, s = _check_binary(y, scores)
    tps, fps, distinct = _roc_counts(y, s)
    fpr = np.r_[0.0, fps / (y.size - tps[-1])]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[distinct, -np.inf]


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    # Mann-Whitney: P(score_pos > score_neg) + P(tie) / 2, the trapezoidal area under roc_curve.
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y: Any, scores: Any) -> float:
    """Area under the ROC curve: ``P(s_pos > s_neg) + P(s_pos == s_neg) / 2``.

    The probability is over a random positive and a random negative of the sample; it is
    the trapezoidal area under :func:`roc_curve` and equals
    ``sklearn.metrics.roc_auc_score``.

    Parameters
    ----------
    y : array_like of {0, 1}, shape (n,)
        1 for anomalies, 0 for normal samples; both must be present.
    scores : array_like, shape (n,)
        Anomaly scores, higher = more anomalous.

    Returns
    -------
    float
        In [0, 1]; 0.5 is chance, 1 a perfect ranking.

    Raises
    ------
    DataError
        Invalid labels or scores (see :func:`roc_curve`).
    """
    return _auc(*_check_binary(y, scores))


def average_precision(y: Any, scores: Any) -> float:
    """Average precision ``AP = sum_k (R_k - R_{k-1}) P_k``, without interpolation.

    ``P_k`` and ``R_k`` are precision and recall when the ``k`` highest distinct score
    values are flagged (tied samples enter together); ``R_0 = 0``. This is the definition
    of ``sklearn.metrics.average_precision_score``. A random ranking gives about the
    anomaly fraction, not 0.5.

    Parameters
    ----------
    y : array_like of {0, 1}, shape (n,)
        1 for anomalies, 0 for normal samples; both must be present.
    scores : array_like, shape (n,)
        Anomaly scores, higher = more anomalous.

    Returns
    -------
    float
        In (0, 1].

    Raises
    ------
    DataError
        Invalid labels or scores (see :func:`roc_curve`).
    """
    y, s = _check_binary(y, scores)
    tps, fps, _ = _roc_counts(y, s)
    recall = np.r_[0.0, tps / tps[-1]]
    return float(np.sum(np.diff(recall) * tps / (tps + fps)))


def operating_point(y: Any, scores: Any, fpr: float) -> OperatingPoint:
    """The operating point used by :func:`tpr_at_fpr`, with its threshold and counts.

    Parameters
    ----------
    y, scores, fpr
        As in :func:`tpr_at_fpr`.

    Returns
    -------
    OperatingPoint
        ``(threshold, tpr, fpr, n_tp, n_pos, n_fp, n_neg)``; ``fpr`` is the achieved rate.

    Warns
    -----
    AelabWarning
        If ``fpr < 1 / n_neg``.
    """
    return _operating_point(y, scores, fpr)


def _operating_point(y: Any, scores: Any, fpr: float) -> OperatingPoint:
    # Called directly by each public function, so the warning points at the user's line.
    fpr = _check_rate(fpr, "fpr")
    y, s = _check_binary(y, scores)
    t = _fpr_threshold(s[~y], fpr, "negative", stacklevel=3)
    n_tp, n_fp = int((s[y] > t).sum()), int((s[~y] > t).sum())
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return OperatingPoint(t, n_tp / n_pos, n_fp / n_neg, n_tp, n_pos, n_fp, n_neg)


def tpr_at_fpr(y: Any, scores: Any, fpr: float) -> float:
    """True-positive rate at a target false-positive rate, never exceeding the target.

    Definition: the threshold ``t`` is the smallest value such that the fraction of
    negatives with ``score > t`` is at most ``fpr``; the result is the fraction of
    positives with ``score > t``. Equivalently (see
    :func:`aelab.thresholds.threshold_from_fpr`), with the ``n`` negative scores sorted
    ascending and ``k = floor(fpr * n)``, ``t = s_(n-k)``. Samples tied at ``t`` are all
    left unflagged, so the achieved FPR is ``<= fpr`` (it is below it when ties or the
    granularity ``1 / n`` prevent hitting it exactly); no interpolation between ROC
    points is done. When ``fpr < 1 / n`` the only admissible threshold is the largest
    negative score (zero false positives), and a warning says the sample cannot
    resolve that rate.

    Parameters
    ----------
    y : array_like of {0, 1}, shape (n,)
        1 for anomalies (positives), 0 for normal samples (negatives); both present.
    scores : array_like, shape (n,)
        Anomaly scores, higher = more anomalous.
    fpr : float
        Target false-positive rate, in (0, 1).

    Returns
    -------
    float
        The TPR at that threshold. :func:`operating_point` also returns the threshold
        and the achieved FPR.

    Raises
    ------
    DataError
        Invalid labels or scores (see :func:`roc_curve`).
    ConfigError
        ``fpr`` outside (0, 1).

    Warns
    -----
    AelabWarning
        If ``fpr < 1 / n_neg``.

    Examples
    --------
    >>> y = [0, 0, 0, 0, 1, 1]
    >>> tpr_at_fpr(y, [0.1, 0.2, 0.3, 0.4, 0.25, 0.9], fpr=0.25)
    0.5
    """
    return _operating_point(y, scores, fpr).tpr


def roc_auc_ci(
    y: Any,
    scores: Any,
    level: float = 0.95,
    method: str = "hanley-mcneil",
    n_boot: int = 1000,
    random_state: Any = None,
) -> tuple[float, float, float]:
    """ROC AUC with a confidence interval.

    Methods:

    * ``"hanley-mcneil"``: normal approximation with the standard error of Hanley &
      McNeil (1982, Radiology 143:29), ``SE^2 = [A(1-A) + (n_p-1)(Q1-A^2) +
      (n_n-1)(Q2-A^2)] / (n_p n_n)``, ``Q1 = A/(2-A)``, ``Q2 = 2A^2/(1+A)``; the interval
      ``A -/+ z SE`` is clipped to [0, 1]. Fast; it assumes exponential-like score
      distributions and collapses to a point when A is 0 or 1.
    * ``"bootstrap"``: percentile interval of ``n_boot`` stratified bootstrap replicates
      (positives and negatives resampled separately, so both classes keep their counts).

    Parameters
    ----------
    y, scores : array_like, shape (n,)
        As in :func:`roc_auc`.
    level : float, default 0.95
        Confidence level, in (0, 1).
    method : {"hanley-mcneil", "bootstrap"}
        How the interval is computed.
    n_boot : int, default 1000
        Number of bootstrap replicates (``method="bootstrap"`` only); at least 100.
    random_state : None, int or numpy.random.Generator
        Seed for the bootstrap (``numpy.random.default_rng``).

    Returns
    -------
    auc, low, high : float
        The AUC of the full sample and the interval bounds.

    Raises
    ------
    DataError
        Invalid labels or scores.
    ConfigError
        Invalid ``level``, ``method`` or ``n_boot``.
    """
    level = _check_rate(level, "level")
    if method not in ("hanley-mcneil", "bootstrap"):
        raise ConfigError(f"method must be 'hanley-mcneil' or 'bootstrap'; got {method!r}.")
    y, s = _check_binary(y, scores)
    auc = _auc(y, s)
    if method == "hanley-mcneil":
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
        var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
        half = ndtri((1 + level) / 2) * np.sqrt(max(var, 0.0))
        return auc, float(max(auc - half, 0.0)), float(min(auc + half, 1.0))
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ConfigError(f"n_boot must be an integer >= 100; got {n_boot!r}.")
    rng = np.random.default_rng(random_state)
    pos, neg = s[y], s[~y]
    labels = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    boots = [_auc(labels, np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]) for _ in range(int(n_boot))]
    low, high = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return auc, float(low), float(high)


def tpr_at_fpr_ci(
    y: Any, scores: Any, fpr: float, level: float = 0.95, method: str = "clopper-pearson"
) -> tuple[float, float, float]:
    """TPR at a target FPR (as :func:`tpr_at_fpr`) with a binomial confidence interval.

    The threshold is fixed as in :func:`tpr_at_fpr`; the number of positives above it is
    treated as ``Binomial(n_pos, TPR)``. ``"clopper-pearson"`` (default) is the exact
    interval from beta quantiles, conservative (coverage >= level); ``"wilson"`` is the
    Wilson score interval, shorter with coverage close to level. Both come from
    :meth:`scipy.stats.binomtest.proportion_ci`. The interval does not include the
    uncertainty of the threshold itself (of the achieved FPR), which is set from the
    finite negative sample; with few negatives that uncertainty can dominate.

    Parameters
    ----------
    y, scores, fpr
        As in :func:`tpr_at_fpr`.
    level : float, default 0.95
        Confidence level, in (0, 1).
    method : {"clopper-pearson", "wilson"}
        Binomial interval.

    Returns
    -------
    tpr, low, high : float

    Raises
    ------
    DataError, ConfigError
        As :func:`tpr_at_fpr`, plus an invalid ``level`` or ``method``.

    Warns
    -----
    AelabWarning
        If ``fpr < 1 / n_neg``.
    """
    level = _check_rate(level, "level")
    methods = {"clopper-pearson": "exact", "wilson": "wilson"}
    if method not in methods:
        raise ConfigError(f"method must be 'clopper-pearson' or 'wilson'; got {method!r}.")
    op = _operating_point(y, scores, fpr)
    ci = binomtest(op.n_tp, op.n_pos).proportion_ci(confidence_level=level, method=methods[method])
    return op.tpr, float(ci.low), float(ci.high)


def clustering_scores(labels_true: Any, labels_pred: Any) -> dict[str, float]:
    """Agreement between two partitions, invariant to how the clusters are numbered.

    Parameters
    ----------
    labels_true : array_like, shape (n,)
        Reference classes (any hashable labels, e.g. digit classes).
    labels_pred : array_like, shape (n,)
        Cluster assignments, e.g. k-means in the latent space.

    Returns
    -------
    dict
        ``"ari"``: adjusted Rand index (1 = identical partitions, about 0 for random
        ones, can be negative; ``sklearn.metrics.adjusted_rand_score``);
        ``"nmi"``: normalised mutual information ``I(T; P) / ((H(T) + H(P)) / 2)`` in
        [0, 1] (``sklearn.metrics.normalized_mutual_info_score``, arithmetic mean).

    Raises
    ------
    DataError
        Inputs that are not 1-D, empty, or of different lengths.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    a, b = np.asarray(_to_numpy(labels_true)), np.asarray(_to_numpy(labels_pred))
    if a.ndim != 1 or b.ndim != 1:
        raise DataError(f"labels_true and labels_pred must be 1-D; got shapes {a.shape} and {b.shape}.")
    if a.size != b.size or a.size == 0:
        raise DataError(
            f"labels_true and labels_pred must be non-empty and of the same length; got {a.size} and {b.size}."
        )
    return {"ari": float(adjusted_rand_score(a, b)), "nmi": float(normalized_mutual_info_score(a, b))}
