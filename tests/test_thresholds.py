import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from aelab.exceptions import ConfigError, DataError
from aelab.thresholds import AelabWarning, threshold_from_contamination, threshold_from_fpr

TEN = np.arange(1, 11) / 10  # 0.1 ... 1.0


# ---------------------------------------------------------------- hand-made cases


@pytest.mark.parametrize(
    "fpr, expected, exceed",
    [(0.1, 0.9, 1), (0.2, 0.8, 2), (0.25, 0.8, 2), (0.5, 0.5, 5), (0.99, 0.1, 9)],
)
def test_threshold_from_fpr_no_ties(fpr, expected, exceed):
    rng = np.random.default_rng(0)
    t = threshold_from_fpr(rng.permutation(TEN), fpr)  # order of the input does not matter
    assert t == expected
    assert (TEN > t).sum() == exceed == math.floor(fpr * 10 + 1e-9)


@pytest.mark.parametrize(
    "fpr, expected, exceed",
    [(0.2, 2, 0), (0.3, 1, 3), (0.5, 1, 3), (0.69, 1, 3), (0.7, 0, 7)],
)
def test_threshold_from_fpr_ties_never_split(fpr, expected, exceed):
    s = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2], dtype=float)
    t = threshold_from_fpr(s, fpr)
    assert t == expected
    assert (s > t).sum() == exceed <= fpr * s.size
    # smallest such threshold: the next lower distinct score already flags too many
    lower = s[s < t]
    if lower.size:
        assert (s > lower.max()).sum() > fpr * s.size


def test_threshold_from_fpr_float_rounding_of_k():
    # 0.29 * 100 = 28.999999999999996 in floating point; 29 exceedances are allowed.
    t = threshold_from_fpr(np.arange(100.0), 0.29)
    assert t == 70.0 and (np.arange(100) > t).sum() == 29


def test_threshold_from_fpr_brute_force_definition():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(5, 60))
        s = rng.integers(0, 8, size=n).astype(float)  # many ties
        fpr = float(rng.uniform(1 / n, 0.99))
        candidates = np.unique(s)
        admissible = [c for c in candidates if (s > c).mean() <= fpr]
        assert threshold_from_fpr(s, fpr) == min(admissible)


def test_threshold_from_fpr_warns_below_resolution():
    with pytest.warns(AelabWarning, match="cannot resolve") as rec:
        t = threshold_from_fpr(TEN, 0.05)
    assert t == 1.0  # the maximum: zero exceedances
    assert "at least 20 normal samples" in str(rec[0].message)
    assert rec[0].filename == __file__  # the warning points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threshold_from_fpr(TEN, 0.1)  # exactly 1/n: resolvable, no warning


def test_threshold_from_fpr_accepts_torch_and_inf():
    assert threshold_from_fpr(torch.tensor(TEN), 0.2) == pytest.approx(0.8)
    s = np.r_[TEN, np.inf]
    assert threshold_from_fpr(s, 1 / 11) == 1.0  # the +inf sample is the one exceedance


@pytest.mark.parametrize("fpr", [0, 1, -0.1, 1.5, np.nan, "0.1", True, None])
def test_threshold_from_fpr_rejects_bad_fpr(fpr):
    with pytest.raises(ConfigError, match=r"fpr must be a number in \(0, 1\)"):
        threshold_from_fpr(TEN, fpr)


@pytest.mark.parametrize(
    "scores, match",
    [
        ([], "empty"),
        ([[1, 2], [3, 4]], "1-D"),
        ([1, np.nan, 2], "NaN"),
        ([1, -np.inf], "-inf"),
        (["a", "b"], "real numbers"),
    ],
)
def test_threshold_rejects_bad_scores(scores, match):
    with pytest.raises(DataError, match=match):
        threshold_from_fpr(scores, 0.1)
    with pytest.raises(DataError, match=match):
        threshold_from_contamination(scores, 0.1)


# ---------------------------------------------------------------- statistical behaviour


def test_threshold_from_fpr_gives_target_rate_on_fresh_data():
    rng = np.random.default_rng(2024)
    n, m, fpr = 5_000, 20_000, 0.01
    t = threshold_from_fpr(rng.standard_normal(n), fpr)
    fresh = rng.standard_normal(m)
    observed = (fresh > t).mean()
    # Var(observed) = Var(true rate at t) + binomial: fpr(1-fpr)/n + fpr(1-fpr)/m.
    sigma = math.sqrt(fpr * (1 - fpr) * (1 / n + 1 / m))
    assert abs(observed - fpr) < 4 * sigma  # 4 sigma = 0.0063
    # Exact checks: the true rate at t is Beta(k+1, n-k) for k = 50 allowed exceedances,
    # and the fresh count is Binomial(m, true rate).
    k = 50
    true_rate = stats.norm.sf(t)
    assert stats.beta(k + 1, n - k).ppf(1e-4) < true_rate < stats.beta(k + 1, n - k).ppf(1 - 1e-4)
    assert stats.binomtest(int((fresh > t).sum()), m, true_rate).pvalue > 1e-4


def test_threshold_from_fpr_expected_true_rate_is_k_plus_1_over_n_plus_1():
    # Averaged over many calibration samples the true FPR is (k+1)/(n+1) (uniform order
    # statistics), while the in-sample FPR never exceeds the target.
    rng = np.random.default_rng(7)
    n, fpr, reps = 200, 0.05, 2000
    k = 10
    rates = np.empty(reps)
    for i in range(reps):
        s = rng.random(n)  # uniform scores: the true FPR of t is 1 - t
        t = threshold_from_fpr(s, fpr)
        assert (s > t).sum() == k
        rates[i] = 1 - t
    se = rates.std(ddof=1) / math.sqrt(reps)
    assert abs(rates.mean() - (k + 1) / (n + 1)) < 4 * se


# ---------------------------------------------------------------- contamination


def test_threshold_from_contamination_matches_pyod_rule():
    rng = np.random.default_rng(3)
    s = rng.normal(size=1001)
    for c in (0.01, 0.1, 0.5):
        t = threshold_from_contamination(s, c)
        assert t == np.percentile(s, 100 * (1 - c))
        assert abs((s > t).mean() - c) <= 1 / s.size
    assert threshold_from_contamination(np.arange(11), 0.1) == 9.0
    assert threshold_from_contamination(np.arange(10), 0.1) == pytest.approx(8.1)  # interpolated
    assert threshold_from_contamination([1, 2, np.inf, np.inf], 0.1) == np.inf


@pytest.mark.parametrize("c", [0, 0.51, 1, -0.1, np.nan, "0.1"])
def test_threshold_from_contamination_rejects_bad_contamination(c):
    with pytest.raises(ConfigError, match=r"contamination must be a number in \(0, 0.5\]"):
        threshold_from_contamination(TEN, c)
