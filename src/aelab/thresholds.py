"""Decision thresholds on anomaly scores (higher score = more anomalous).

A sample is flagged as anomalous when ``score > threshold`` (strictly greater), as in
PyOD's ``predict``. Two rules:

* :func:`threshold_from_fpr`: from known-normal scores and a target false-positive rate,
  with an exact order-statistic rule that never lets the in-sample FPR exceed the target;
* :func:`threshold_from_contamination`: PyOD's rule, the ``100 * (1 - contamination)``
  percentile of the training scores.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._validation import _to_numpy
from .exceptions import ConfigError, DataError

__all__ = ["AelabWarning", "threshold_from_fpr", "threshold_from_contamination"]


class AelabWarning(UserWarning):
    """A result is valid but less reliable than asked for (e.g. an FPR the sample cannot resolve)."""


def _check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a 1-D float64 array; reject NaN and -inf (+inf is allowed)."""
    arr = _to_numpy(scores)
    if arr.dtype == object or arr.dtype.kind in "USVOc":
        raise DataError(f"{name} must be real numbers; got dtype {arr.dtype}.")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(
            f"{name} must be 1-D (one score per sample); got shape {arr.shape}. Use scores.ravel() if it is a column."
        )
    if arr.size == 0:
        raise DataError(f"{name} is empty; at least one score is needed.")
    nan = np.isnan(arr)
    if nan.any():
        raise DataError(
            f"{name} contains {int(nan.sum())} NaN value(s) (first at index {int(np.flatnonzero(nan)[0])}); "
            "a NaN score usually means the model diverged or the input had NaN. Remove those samples or fix the model."
        )
    if np.isneginf(arr).any():
        raise DataError(f"{name} contains -inf; scores must be finite or +inf (an infinitely anomalous sample).")
    return arr


def _check_rate(value: Any, name: str, high: float = 1.0, high_inclusive: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = 0.0 < value and (value <= high if high_inclusive else value < high)
    if not ok:
        interval = f"(0, {high:g}]" if high_inclusive else f"(0, {high:g})"
        raise ConfigError(f"{name} must be a number in {interval}; got {value!r}.")
    return value


def _fpr_threshold(normal: np.ndarray, fpr: float, what: str, stacklevel: int) -> float:
    """The order-statistic rule of :func:`threshold_from_fpr` on checked scores."""
    n = normal.size
    # round() absorbs float error such as 0.29 * 100 = 28.999999999999996 before the floor.
    k = math.floor(round(fpr * n, 9))
    if k == 0:
        warnings.warn(
            f"fpr={fpr:g} is below 1/n = {1 / n:.3g} for the n={n} {what} scores given: the sample cannot "
            f"resolve that rate. The threshold is set at their maximum (zero false positives in the sample), "
            f"so the true false-positive rate is not controlled at {fpr:g}; use at least "
            f"{math.ceil(1 / fpr)} {what} samples.",
            AelabWarning,
            stacklevel=stacklevel + 1,
        )
    return float(np.partition(normal, n - k - 1)[n - k - 1])


def threshold_from_fpr(normal_scores: Any, fpr: float) -> float:
    """Threshold at which at most a fraction ``fpr`` of known-normal samples is flagged.

    Rule: sort the ``n`` normal scores ascending, ``s_(1) <= ... <= s_(n)``; allow
    ``k = floor(fpr * n)`` exceedances; return ``t = s_(n-k)``, the ``(n-k)``-th smallest.
    Samples are flagged when ``score > t``, so the in-sample false-positive count
    ``#{s_i > t}`` is at most ``k``: exactly ``k`` without ties, fewer when scores tie at
    ``t`` (tied samples are all left unflagged, never split). ``t`` is the smallest
    threshold with this property: any lower one flags ``s_(n-k), ..., s_(n)``, ``k + 1``
    samples.

    For fresh samples from the same continuous distribution, the expected false-positive
    rate at ``t`` is ``(k + 1) / (n + 1)``, slightly above ``fpr`` (the in-sample rate is
    ``k / n <= fpr``), with standard deviation about ``sqrt(fpr * (1 - fpr) / n)``.

    Parameters
    ----------
    normal_scores : array_like, shape (n,)
        Anomaly scores of samples known to be normal (higher = more anomalous).
    fpr : float
        Target false-positive rate, in (0, 1).

    Returns
    -------
    float
        The threshold ``t``; predict anomalous where ``score > t``.

    Raises
    ------
    DataError
        Scores that are not 1-D, empty, NaN or -inf.
    ConfigError
        ``fpr`` outside (0, 1).

    Warns
    -----
    AelabWarning
        If ``fpr < 1 / n``: the sample cannot resolve that rate, ``k = 0`` and the
        threshold is the largest normal score.

    Examples
    --------
    >>> threshold_from_fpr([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], fpr=0.2)
    0.8
    """
    fpr = _check_rate(fpr, "fpr")
    return _fpr_threshold(_check_scores(normal_scores, "normal_scores"), fpr, "normal", stacklevel=2)


def threshold_from_contamination(train_scores: Any, contamination: float) -> float:
    """PyOD's threshold: the ``100 * (1 - contamination)`` percentile of the training scores.

    Computed with ``np.percentile`` (linear interpolation between order statistics), as
    ``pyod.models.base.BaseDetector._process_decision_scores`` does, so about a fraction
    ``contamination`` of the training samples have ``score > threshold``.

    Parameters
    ----------
    train_scores : array_like, shape (n,)
        Anomaly scores of the (possibly contaminated) training samples.
    contamination : float
        Expected fraction of anomalies in the training data, in (0, 0.5].

    Returns
    -------
    float
        The threshold; predict anomalous where ``score > threshold``.

    Raises
    ------
    DataError
        Scores that are not 1-D, empty, NaN or -inf.
    ConfigError
        ``contamination`` outside (0, 0.5].

    Examples
    --------
    >>> threshold_from_contamination([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], contamination=0.1)
    9.0
    """
    contamination = _check_rate(contamination, "contamination", high=0.5, high_inclusive=True)
    scores = _check_scores(train_scores, "train_scores")
    with np.errstate(invalid="ignore"):
        t = float(np.percentile(scores, 100 * (1 - contamination)))
    return math.inf if math.isnan(t) else t  # interpolating between two +inf scores gives NaN
