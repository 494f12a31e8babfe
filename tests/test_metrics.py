import math
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from scipy import stats

from aelab.exceptions import ConfigError, DataError
from aelab.metrics import (
    average_precision,
    clustering_scores,
    operating_point,
    roc_auc,
    roc_auc_ci,
    roc_curve,
    tpr_at_fpr,
    tpr_at_fpr_ci,
)
from aelab.thresholds import AelabWarning

Y4, S4 = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]  # scikit-learn's documentation example


def _labelled(neg, pos):
    return np.r_[np.zeros(len(neg), int), np.ones(len(pos), int)], np.r_[neg, pos].astype(float)


def _ties_dataset(rng, n=300):
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(rng.normal(size=n) + y, 1)  # rounding makes many ties, also across classes
    return y, s


# ---------------------------------------------------------------- AUC, AP, ROC: known answers


def test_roc_auc_known_values():
    assert roc_auc(Y4, S4) == 0.75
    assert roc_auc([0, 0, 1, 1], [1, 2, 2, 3]) == 0.875  # a tie across classes counts 1/2
    assert roc_auc([0, 1], [5, 5]) == 0.5
    assert roc_auc([1, 1, 0], [1, 2, 3]) == 0.0
    assert roc_auc([0, 1], [0, np.inf]) == 1.0


def test_average_precision_known_values():
    assert average_precision(Y4, S4) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([0, 0, 1, 1], [1, 2, 2, 3]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([0, 0, 0, 1], [1, 1, 1, 1]) == 0.25  # all tied: the anomaly fraction


def test_roc_curve_known_points_and_threshold_convention():
    y, s = np.array([0, 0, 1, 1]), np.array([1.0, 2, 2, 3])
    fpr, tpr, thr = roc_curve(y, s)
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 1, 1])
    np.testing.assert_array_equal(thr, [3, 2, 1, -np.inf])
    for f, t, th in zip(fpr, tpr, thr):  # each point is "flag where score > threshold"
        assert (s[y == 0] > th).mean() == f and (s[y == 1] > th).mean() == t


def test_against_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, s = _ties_dataset(rng)
        assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
        fpr, tpr, thr = roc_curve(y, s)
        sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr)
        np.testing.assert_allclose(tpr, sk_tpr)
        np.testing.assert_array_equal(thr[:-1], sk_thr[1:])  # ours: score > t, sklearn: score >= t
        assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s), abs=1e-12)


def test_roc_curve_keeps_low_fpr_points_for_log_axis():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(10_000, int), np.ones(1000, int)]
    s = np.r_[rng.normal(size=10_000), rng.normal(3, 1, size=1000)]
    fpr, tpr, _ = roc_curve(y, s)
    assert fpr.size == s.size + 1  # no distinct score dropped
    assert fpr[fpr > 0].min() == 1e-4  # the resolution floor 1/n_neg is present
    assert tpr[fpr == 0].max() > 0  # the zero-false-positive point
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert skm.roc_curve(y, s)[0].size < fpr.size  # what sklearn's default would drop


# ---------------------------------------------------------------- tpr_at_fpr


NEG_A, POS_A = np.arange(1, 11) / 10, [0.35, 0.75, 0.95, 1.5]
NEG_B, POS_B = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2], [1, 2, 2, 3]  # ties inside and across classes


@pytest.mark.parametrize(
    "neg, pos, fpr, threshold, tpr, achieved",
    [
        (NEG_A, POS_A, 0.1, 0.9, 0.5, 0.1),
        (NEG_A, POS_A, 0.25, 0.8, 0.5, 0.2),
        (NEG_A, POS_A, 0.3, 0.7, 0.75, 0.3),
        (NEG_B, POS_B, 0.2, 2, 0.25, 0.0),  # the two tied negatives at 2 cannot be split
        (NEG_B, POS_B, 0.3, 1, 0.75, 0.3),  # the positive tied at 1 is not flagged
        (NEG_B, POS_B, 0.5, 1, 0.75, 0.3),
        (NEG_B, POS_B, 0.69, 1, 0.75, 0.3),
        (NEG_B, POS_B, 0.7, 0, 1.0, 0.7),
    ],
)
def test_tpr_at_fpr_hand_made(neg, pos, fpr, threshold, tpr, achieved):
    y, s = _labelled(neg, pos)
    op = operating_point(y, s, fpr)
    assert op.threshold == threshold
    assert op.tpr == tpr == tpr_at_fpr(y, s, fpr)
    assert op.fpr == pytest.approx(achieved) and op.fpr <= fpr
    assert (op.n_pos, op.n_neg) == (len(pos), len(neg))


def test_tpr_at_fpr_brute_force_definition():
    rng = np.random.default_rng(2)
    for _ in range(100):
        y, s = _ties_dataset(rng, n=int(rng.integers(20, 120)))
        if y.min() == y.max():
            continue
        n_neg = int((y == 0).sum())
        fpr = float(rng.uniform(1 / n_neg, 0.95))
        neg, pos = s[y == 0], s[y == 1]
        candidates = np.r_[np.unique(s), -np.inf]
        t = min(c for c in candidates if (neg > c).mean() <= fpr)
        op = operating_point(y, s, fpr)
        assert op.threshold == t
        assert op.tpr == (pos > t).mean()
        fpr_c, tpr_c, thr_c = roc_curve(y, s)  # the operating point is on the ROC curve
        i = np.flatnonzero(thr_c == t)[0]
        assert (fpr_c[i], tpr_c[i]) == (op.fpr, op.tpr)


def test_tpr_at_fpr_warns_when_fpr_below_resolution():
    y, s = _labelled(NEG_A, POS_A)
    with pytest.warns(AelabWarning, match="cannot resolve") as rec:
        op = operating_point(y, s, 0.01)
    assert rec[0].filename == __file__
    assert op.threshold == 1.0 and op.fpr == 0.0 and op.tpr == 0.25  # only 1.5 > max(neg)
    with pytest.warns(AelabWarning, match="negative"):
        assert tpr_at_fpr(y, s, 1e-5) == 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tpr_at_fpr(y, s, 0.1)


def test_tpr_at_fpr_on_separated_gaussians():
    rng = np.random.default_rng(3)
    neg, pos = rng.normal(size=20_000), rng.normal(2, 1, size=20_000)
    y, s = _labelled(neg, pos)
    # true TPR at FPR 0.1: P(N(2,1) > z_0.9)
    expected = stats.norm.sf(stats.norm.isf(0.1) - 2)
    # sigma: binomial on positives plus threshold jitter transported by the density ratio
    sigma = math.sqrt(expected * (1 - expected) / 20_000) + stats.norm.pdf(stats.norm.isf(0.1) - 2) * math.sqrt(
        0.09 / 20_000
    ) / stats.norm.pdf(stats.norm.isf(0.1))
    assert abs(tpr_at_fpr(y, s, 0.1) - expected) < 4 * sigma


# ---------------------------------------------------------------- uncertainties


def test_roc_auc_ci_hanley_mcneil_formula_and_coverage():
    auc, low, high = roc_auc_ci(Y4, S4)
    q1, q2 = 0.75 / 1.25, 2 * 0.75**2 / 1.75
    se = math.sqrt((0.75 * 0.25 + (q1 - 0.75**2) + (q2 - 0.75**2)) / 4)
    assert auc == 0.75 and low == pytest.approx(max(0, 0.75 - 1.959964 * se)) and high == 1.0
    # Coverage on binormal data with known AUC = Phi(d / sqrt 2).
    rng = np.random.default_rng(4)
    true_auc, reps, hits = stats.norm.cdf(1 / math.sqrt(2)), 400, 0
    for _ in range(reps):
        y, s = _labelled(rng.normal(size=100), rng.normal(1, 1, size=100))
        _, lo, hi = roc_auc_ci(y, s)
        hits += lo <= true_auc <= hi
    assert abs(hits / reps - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps)


@pytest.mark.slow  # about 2 s: 120 datasets x 200 bootstrap replicates
def test_roc_auc_ci_bootstrap_coverage_and_reproducibility():
    rng = np.random.default_rng(5)
    true_auc, reps, hits = stats.norm.cdf(1 / math.sqrt(2)), 120, 0
    for i in range(reps):
        y, s = _labelled(rng.normal(size=80), rng.normal(1, 1, size=80))
        _, lo, hi = roc_auc_ci(y, s, method="bootstrap", n_boot=200, random_state=i)
        hits += lo <= true_auc <= hi
    assert abs(hits / reps - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps)
    y, s = _ties_dataset(np.random.default_rng(6))
    a = roc_auc_ci(y, s, method="bootstrap", n_boot=300, random_state=0)
    assert a == roc_auc_ci(y, s, method="bootstrap", n_boot=300, random_state=0)
    assert a != roc_auc_ci(y, s, method="bootstrap", n_boot=300, random_state=1)
    assert a[1] < a[0] < a[2]
    # both methods estimate the same spread on a moderate sample
    hm = roc_auc_ci(y, s)
    assert (a[2] - a[1]) == pytest.approx(hm[2] - hm[1], rel=0.25)


def test_tpr_at_fpr_ci_known_intervals():
    y, s = _labelled(np.zeros(10), np.r_[np.ones(3), np.zeros(7)])  # fpr 0.1: t = 0, TPR = 3/10
    tpr, lo, hi = tpr_at_fpr_ci(y, s, 0.1)
    assert tpr == 0.3
    assert lo == pytest.approx(stats.beta.ppf(0.025, 3, 8)) and hi == pytest.approx(stats.beta.ppf(0.975, 4, 7))
    z = stats.norm.ppf(0.975)
    centre, half = (3 + z**2 / 2) / (10 + z**2), z / (10 + z**2) * math.sqrt(3 * 7 / 10 + z**2 / 4)
    assert tpr_at_fpr_ci(y, s, 0.1, method="wilson")[1:] == pytest.approx((centre - half, centre + half))
    y0, s0 = _labelled(np.arange(10.0), np.zeros(10))  # TPR = 0: Clopper-Pearson closed form
    assert tpr_at_fpr_ci(y0, s0, 0.5)[1:] == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))


def test_tpr_at_fpr_ci_clopper_pearson_covers():
    rng = np.random.default_rng(7)
    neg = np.arange(100.0)  # fixed negatives: fpr 0.1 gives t = 89.
    true_tpr, reps, hits = 0.3, 500, 0
    for _ in range(reps):
        pos = np.where(rng.random(40) < true_tpr, 200.0, 0.0)
        _, lo, hi = tpr_at_fpr_ci(*_labelled(neg, pos), 0.1, level=0.9)
        hits += lo <= true_tpr <= hi
    assert hits / reps >= 0.9 - 3 * math.sqrt(0.09 / reps)  # conservative by construction


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "y, s, match",
    [
        ([1, 2, 1], [0.1, 0.2, 0.3], r"only 0 \(normal\) and 1"),
        ([-1, 1, 1], [0.1, 0.2, 0.3], r"got values \[-1, 1\]"),
        ([0, np.nan, 1], [0.1, 0.2, 0.3], "only 0"),
        (["a", "b"], [0.1, 0.2], "only 0"),
        ([0, 1], [0.1, 0.2, 0.3], "same length"),
        ([0, 0, 0], [0.1, 0.2, 0.3], r"no anomalies \(1\)"),
        ([1, 1], [0.1, 0.2], r"no normal samples \(0\)"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN"),
        ([[0, 1]], [0.1, 0.2], "1-D"),
        ([0, 1], [[0.1, 0.2]], "1-D"),
    ],
)
def test_invalid_inputs(y, s, match):
    for f in (roc_auc, average_precision, roc_curve, lambda y, s: tpr_at_fpr(y, s, 0.5)):
        with pytest.raises(DataError, match=match):
            f(y, s)


def test_accepts_bool_labels_and_torch():
    assert roc_auc(np.array([False, False, True, True]), torch.tensor(S4)) == 0.75


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: tpr_at_fpr(Y4, S4, 0), "fpr must be"),
        (lambda: tpr_at_fpr(Y4, S4, 1.0), "fpr must be"),
        (lambda: roc_auc_ci(Y4, S4, level=95), "level must be"),
        (lambda: roc_auc_ci(Y4, S4, method="delong"), "hanley-mcneil"),
        (lambda: roc_auc_ci(Y4, S4, method="bootstrap", n_boot=10), "n_boot"),
        (lambda: tpr_at_fpr_ci(Y4, S4, 0.5, method="exact"), "clopper-pearson"),
    ],
)
def test_invalid_parameters(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


# ---------------------------------------------------------------- clustering


def test_clustering_scores_known_values():
    true, pred = [0, 0, 1, 1], [0, 0, 1, 2]  # pred refines true
    out = clustering_scores(true, pred)
    assert out["ari"] == pytest.approx(4 / 7)
    assert out["nmi"] == pytest.approx(0.8)  # I = ln 2, H(T) = ln 2, H(P) = 1.5 ln 2
    assert clustering_scores(["a", "a", "b", "c"], [5, 5, 9, 7]) == {"ari": 1.0, "nmi": 1.0}  # relabelling


def test_clustering_scores_random_partitions_near_zero():
    rng = np.random.default_rng(8)
    out = clustering_scores(rng.integers(0, 10, 5000), rng.integers(0, 10, 5000))
    assert abs(out["ari"]) < 0.01 and out["nmi"] < 0.01


@pytest.mark.parametrize("a, b", [([0, 1], [0, 1, 1]), ([], []), ([[0, 1]], [[0, 1]])])
def test_clustering_scores_invalid(a, b):
    with pytest.raises(DataError):
        clustering_scores(a, b)
