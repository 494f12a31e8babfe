"""Decisions with guarantees: conformal p-values, thresholds that hold on fresh rows, BH, contamination."""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

import aelab
from aelab.conformal import conformal_threshold, pvalues, row_hashes, storey_pi0, validation_rows
from aelab.exceptions import ConfigError, DataError
from aelab.heads import HEADS
from aelab.scoring import FITTED_SCORES, RECONSTRUCTION_SCORES
from aelab.thresholds import AelabWarning

D = 30


def table(seed: int):
    """A 30-column table: 5 latent factors plus noise; ``draw(n)`` gives fresh normal rows of it."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(5, D))

    def draw(n, shift=0.0):
        X = rng.normal(size=(n, 5)) @ W + 0.5 * rng.normal(size=(n, D))
        if shift:
            X += shift * rng.choice([-1.0, 1.0], size=(n, D))
        return X.astype(np.float32)

    return draw


# ---------------------------------------------------------------------- the measured case of issue 26
@pytest.mark.parametrize("score", RECONSTRUCTION_SCORES + tuple(s for s in FITTED_SCORES if not HEADS[s].emission))  # tables
def test_set_threshold_on_the_training_rows_holds_the_target_on_fresh_rows(score):
    """AE, novelty=True, 300 clean rows, set_threshold on those same rows (the README's call).

    On main before the fix the neighbour scores flagged 47% of fresh rows at fpr=0.1 (13% at 0.01).
    Now the fit rows are recognised and replaced by the 30 held-out calibration rows, and the
    conformal threshold flags a fresh normal row with probability (k + 1) / (n_cal + 1) <= fpr.
    The realised rate of one fit varies with its 30 calibration rows (a Beta(k + 1, n - k) law),
    so the bound is on the mean over 6 fits: the expected rate plus 3 standard errors (the
    Beta variance of the calibration draw plus the binomial variance of the fresh rows).
    """
    n_fresh, fprs, seeds = 4000, (0.1, 0.01), range(6)
    realised, expected, var = {a: [] for a in fprs}, {a: [] for a in fprs}, {a: [] for a in fprs}
    for seed in seeds:
        draw = table(seed)
        X, fresh = draw(300), draw(n_fresh)
        ae = aelab.Autoencoder(novelty=True, anomaly_score=score, epochs=15, random_state=seed).fit(X)
        s_fresh = ae.decision_function(fresh)
        n = len(ae.calibration_scores_)
        assert n == 30
        for fpr in fprs:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ae.set_threshold(X, fpr=fpr)
            assert any("300 of the 300 rows of X were part of the fit" in str(w.message) for w in caught)
            assert ae.threshold_rule_["scores"] == "calibration"
            k = math.floor(fpr * (n + 1)) - 1
            assert ae.threshold_ == (math.inf if k < 0 else np.sort(ae.calibration_scores_)[n - k - 1])
            e = max(k + 1, 0) / (n + 1)
            realised[fpr].append((s_fresh > ae.threshold_).mean())
            expected[fpr].append(e)
            var[fpr].append(e * (1 - e) / (n + 2) + e * (1 - e) / n_fresh)
    for fpr in fprs:
        bound = np.mean(expected[fpr]) + 3 * math.sqrt(sum(var[fpr])) / len(seeds)
        assert max(expected[fpr]) <= fpr
        assert np.mean(realised[fpr]) <= bound, (score, fpr, realised[fpr])


def test_set_threshold_mixing_fresh_and_fit_rows_keeps_the_fresh_ones():
    draw = table(0)
    X, more = draw(300), draw(200)
    ae = aelab.Autoencoder(novelty=True, epochs=5, random_state=0).fit(X)
    with pytest.warns(AelabWarning, match="100 of the 300 rows of X were part of the fit"):
        ae.set_threshold(np.concatenate([X[:100], more]), fpr=0.1)
    assert ae.threshold_rule_ == {"fpr": 0.1, "n": 230, "rule": "conformal", "scores": "X and calibration"}
    union = np.sort(np.concatenate([ae.decision_function(more), ae.calibration_scores_]))
    assert ae.threshold_ == union[230 - (math.floor(0.1 * 231) - 1) - 1]
    # fresh rows only: the rule of threshold_from_fpr, as before, and no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ae.set_threshold(more, fpr=0.1)
    assert ae.threshold_rule_ == {"fpr": 0.1, "n": 200}
    # X None: the calibration rows alone
    ae.set_threshold(fpr=0.1)
    assert ae.threshold_rule_["scores"] == "calibration" and ae.threshold_rule_["n"] == 30


def test_row_hashes_follow_values_not_dtype():
    X = np.random.default_rng(0).integers(0, 256, size=(50, 4, 4)).astype(np.uint8)
    h = row_hashes(X)
    assert len(np.unique(h)) == 50
    np.testing.assert_array_equal(h, row_hashes(X.astype(np.float32)))
    Y = X.astype(np.float32)
    Y[3, 2, 1] += 0.5
    assert (row_hashes(Y) != h).sum() == 1
    assert row_hashes(np.array([[0.0, 1.0]]))[0] == row_hashes(np.array([[-0.0, 1.0]]))[0]
    assert row_hashes(np.array([[1.0, 2.0]]))[0] != row_hashes(np.array([[2.0, 1.0]]))[0]


# ---------------------------------------------------------------------- p-values
def test_pvalue_formula_and_conformal_threshold_agree():
    cal = np.sort(np.array([1.0, 2.0, 2.0, 3.0, 5.0]))
    np.testing.assert_allclose(pvalues([0.5, 2.0, 2.5, 5.0, 9.0], cal), [6 / 6, 5 / 6, 3 / 6, 2 / 6, 1 / 6])
    rng = np.random.default_rng(1)
    cal = np.sort(rng.normal(size=199))
    s = rng.normal(size=5000)
    for a in (0.005, 0.01, 0.05, 0.2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AelabWarning)
            t = conformal_threshold(cal, a)
        np.testing.assert_array_equal(s > t, pvalues(s, cal) <= a)


@pytest.fixture(scope="module")
def clean_model():
    draw = table(7)
    X = draw(1000)
    # the neighbour distance alone: these anomalies move every column by 1.5, inside each column's range, which
    # the default's axis-aligned isolation forest barely sees (AUROC 0.89 against 0.997), and its noisier upper
    # tail leaves BH a power of 0.06 here; what is tested is the p-values, whatever the score
    ae = aelab.Autoencoder(novelty=True, anomaly_score="knn", epochs=10, random_state=0).fit(X)
    return ae, draw, X


def test_pvalues_of_fresh_normal_rows_are_uniform(clean_model):
    """Marginal uniformity over 400 draws of (99 calibration rows, one fresh row): KS test at level 0.001.

    The p-value is discrete, uniform on {1/100, ..., 1}; subtracting U/100 (U uniform) makes it
    exactly uniform on (0, 1) when the guarantee holds.
    """
    ae, draw, _ = clean_model
    rng = np.random.default_rng(0)
    p = []
    for _ in range(400):
        ae.calibrate(draw(99))
        p.append(ae.pvalues(draw(1))[0])
    p = np.asarray(p) - rng.random(len(p)) / 100
    assert stats.kstest(p, "uniform").pvalue > 0.001
    # the fresh rows' p-values against one calibration set: flags at p <= a hold the rate a
    ae.calibrate(draw(999))
    fresh = ae.pvalues(draw(5000))
    for a in (0.1, 0.01):
        assert (fresh <= a).mean() <= a + 3 * math.sqrt(a * (1 - a) / 999) + 3 * math.sqrt(a * (1 - a) / 5000)


def test_validation_calibration_is_exchangeable_with_fresh_rows():
    """The default calibration rows (the held-out validation rows) score like fresh rows: KS between the two."""
    draw = table(3)
    X = draw(2000)
    ae = aelab.Autoencoder(novelty=True, epochs=10, random_state=0).fit(X)
    assert ae.fitted_.calibration_info == {"source": "validation", "n": 200, "clean": True}
    assert stats.ks_2samp(ae.calibration_scores_, ae.decision_function(draw(2000))).pvalue > 0.001
    # the training rows scored again are not: each finds itself as a neighbour at distance 0
    assert stats.ks_2samp(ae.calibration_scores_, ae.decision_function(X)).pvalue < 1e-6


def test_predict_fpr_flags_the_conformal_rule_and_plain_predict_is_unchanged(clean_model):
    ae, draw, _ = clean_model
    ae.calibrate(draw(500))
    X = np.concatenate([draw(300), draw(50, shift=3.0)])
    s, p = ae.decision_function(X), ae.pvalues(X)
    np.testing.assert_array_equal(ae.predict(X, fpr=0.05), (p <= 0.05).astype(int))
    np.testing.assert_array_equal(ae.predict(X), (s > ae.threshold_).astype(int))
    assert ae.predict(X, fpr=0.05)[300:].mean() > 0.9


def test_bh_matches_scipy_and_controls_the_fdr(clean_model):
    """200 batches (a fresh calibration set each) of 270 normal and 30 anomalous rows, mildly shifted:
    the realised FDR at q is at most q plus 3 Monte-Carlo standard errors."""
    ae, draw, _ = clean_model
    pool_n, pool_a = draw(40000), draw(4000, shift=1.5)
    cal_pool = draw(40000)
    s_n, s_a, s_cal = ae.decision_function(pool_n), ae.decision_function(pool_a), ae.decision_function(cal_pool)
    rng = np.random.default_rng(0)
    X = np.concatenate([pool_n[:270], pool_a[:30]])
    ae.calibrate(cal_pool[:500])
    np.testing.assert_array_equal(ae.predict(X, fdr=0.1),
                                  (stats.false_discovery_control(ae.pvalues(X), method="bh") <= 0.1).astype(int))
    for q in (0.05, 0.1):
        fdp, power = [], []
        for _ in range(200):
            cal = np.sort(rng.choice(s_cal, 500, replace=False))
            s = np.concatenate([rng.choice(s_n, 270, replace=False), rng.choice(s_a, 30, replace=False)])
            p = pvalues(s, cal)
            flag = stats.false_discovery_control(p, method="bh") <= q
            fdp.append(flag[:270].sum() / max(flag.sum(), 1))
            power.append(flag[270:].mean())
        assert np.mean(fdp) <= q + 3 * np.std(fdp) / math.sqrt(len(fdp)), (q, np.mean(fdp))
        assert np.mean(power) > 0.2  # the anomalies are found, not just an empty set of flags


def test_contamination_auto_recovers_a_known_share():
    """Stated errors, for a truth of 10%: +-0.04 for a batch's estimate against 16,000 clean calibration rows
    (Storey on the conformal p-values: consistent under exchangeability alone), +-0.06 for the fit's
    estimate from contaminated training rows, which rests on a model of the normal scores (log-normal
    bulk); benchmarks/calibration.py measures both on real tables."""
    draw = table(11)
    X = np.concatenate([draw(1800), draw(200, shift=4.0)])
    ae = aelab.Autoencoder(contamination="auto", epochs=10, random_state=0).fit(X)
    assert abs(ae.contamination_ - 0.1) <= 0.06
    assert ae.threshold_rule_["contamination"] == "auto" and ae.threshold_rule_["estimate"] == ae.contamination_
    assert abs(ae.predict(X).mean() - ae.contamination_) < 0.01
    assert ae.estimate_contamination() == ae.contamination_
    ae.calibrate(draw(16000))
    batch = np.concatenate([draw(14400), draw(1600, shift=4.0)])
    # Storey at lambda = 1/2: standard error ~ 2 sqrt(0.25 / 16000) (calibration) + 2 sqrt(0.25 / 16000) (batch)
    # = 0.016, so 0.04 is 2.5 of it (with 4,000 of each, 1.3 standard errors: a draw of the data, not the
    # method, decided whether it passed)
    assert abs(ae.estimate_contamination(batch) - 0.1) <= 0.04
    assert ae.estimate_contamination(draw(4000)) <= 0.04
    assert storey_pi0(np.linspace(0, 1, 1001)[1:]) == pytest.approx(1.0, abs=0.01)


def test_contamination_auto_on_vae_and_pca():
    draw = table(12)
    X = np.concatenate([draw(900), draw(100, shift=4.0)])
    # (after 5 epochs the VAE separates the anomalies less in log scale, and the estimate falls to 0.01)
    for est in (aelab.VAE(contamination="auto", epochs=20, random_state=0), aelab.PCA(contamination="auto")):
        est.fit(X)
        assert abs(est.contamination_ - 0.1) <= 0.06, (type(est).__name__, est.contamination_)
    assert est.fitted_.calibration_info["source"] == "training"  # PCA holds nothing out


# ---------------------------------------------------------------------- bad inputs, persistence, streaming
def test_bad_inputs_give_clear_errors(clean_model):
    ae, draw, _ = clean_model
    X = draw(20)
    with pytest.raises(DataError, match="X_normal has 29 features, but Autoencoder is expecting 30"):
        ae.calibrate(X[:, :29])
    for bad in (0, 1, 1.5, -0.1, "0.1", True):
        with pytest.raises(ConfigError, match=r"fpr must be a number in \(0, 1\)"):
            ae.predict(X, fpr=bad)
    with pytest.raises(ConfigError, match=r"fpr must be a number in \(0, 1\)"):
        ae.set_threshold(X, fpr=2)
    with pytest.raises(DataError, match="the batch has 1 row"):
        ae.predict(X[:1], fdr=0.1)
    with pytest.raises(ConfigError, match="not both"):
        ae.predict(X, fpr=0.1, fdr=0.1)
    with pytest.raises(ConfigError, match="contamination must be 'auto' or a number"):
        aelab.Autoencoder(contamination="guess").fit(X)
    with pytest.raises(DataError, match="were part of the fit"):
        aelab.Autoencoder(epochs=1, random_state=0).fit(X).calibrate(X)
    no_cal = aelab.Autoencoder(validation_fraction=0, epochs=1, random_state=0).fit(X)
    assert no_cal.calibration_scores_ is None
    with pytest.raises(ConfigError, match="est.calibrate"):
        no_cal.pvalues(X)


def test_pvalues_survive_save_and_load(clean_model, tmp_path):
    ae, draw, X_fit = clean_model
    ae.calibrate(draw(300))
    X = draw(100)
    ae.save(tmp_path / "m")
    back = aelab.load(tmp_path / "m")
    np.testing.assert_array_equal(back.pvalues(X), ae.pvalues(X))
    np.testing.assert_array_equal(back.predict(X, fdr=0.1), ae.predict(X, fdr=0.1))
    assert back.fitted_.calibration_info == {"source": "calibrate", "n": 300, "clean": True}
    np.testing.assert_array_equal(back.fitted_.fit_hashes, ae.fitted_.fit_hashes)
    with pytest.warns(AelabWarning, match="were part of the fit"):  # the hashes came along
        back.set_threshold(np.concatenate([draw(10), X_fit[:5]]), fpr=0.1)


def test_old_folders_without_calibration_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    draw = table(0)
    ae = aelab.Autoencoder(epochs=2, random_state=0).fit(draw(100))
    ae.save(tmp_path / "m")
    w = load_file(str(tmp_path / "m" / "weights.safetensors"))
    save_file({k: v for k, v in w.items() if k not in ("calibration_scores", "fit_row_hashes")},
              str(tmp_path / "m" / "weights.safetensors"))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    for k in ("calibration", "fit_hash_stride", "contamination_estimate"):
        del cfg["fitted"][k]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "m" / ".aelab.json").unlink()  # an older aelab wrote no ownership marker
    back = aelab.load(tmp_path / "m")
    X = draw(20)
    np.testing.assert_array_equal(back.decision_function(X), ae.decision_function(X))
    with pytest.raises(ConfigError, match="est.calibrate"):
        back.pvalues(X)
    back.calibrate(draw(50))
    assert back.pvalues(X).shape == (20,)


def test_streamed_fit_and_pvalues_match_in_memory(tmp_path):
    draw = table(5)
    X, Y = draw(400), draw(100)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    a = aelab.Autoencoder(novelty=True, epochs=3, random_state=0).fit(X)
    with aelab.io.open_array(tmp_path / "X.npy", chunk_rows=64) as src:
        b = aelab.Autoencoder(novelty=True, anomaly_score="mse", epochs=3, random_state=0).fit(src)
    # the streamed fit's calibration rows are the same held-out rows as in memory
    val = validation_rows(400, 0.1, 0)
    np.testing.assert_array_equal(b.calibration_scores_, np.sort(b.decision_function(X[val])))
    np.testing.assert_array_equal(b.calibration_scores_, np.sort(b.decision_scores_[val]))
    np.testing.assert_array_equal(b.fitted_.fit_hashes, a.fitted_.fit_hashes)
    # in memory, with the neighbour score: the validation rows leave themselves out, as fit scored them
    np.testing.assert_allclose(a.calibration_scores_, np.sort(a.decision_scores_[val]), rtol=1e-12)
    with aelab.io.open_array(tmp_path / "Y.npy", chunk_rows=32) as src:
        np.testing.assert_array_equal(a.pvalues(src), a.pvalues(Y))
    with aelab.io.open_array(tmp_path / "X.npy", chunk_rows=64) as src:
        with pytest.warns(AelabWarning, match="400 of the 400 rows"):
            a.set_threshold(src, fpr=0.1)
    assert a.threshold_rule_["scores"] == "calibration"


# ---------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("conformal-cli")
    draw = table(21)
    X, normal, batch = draw(400), draw(200), np.concatenate([draw(90), draw(10, shift=3.0)])
    aelab.Autoencoder(novelty=True, epochs=5, random_state=0).fit(X).save(d / "m")
    for name, a in (("X", X), ("normal", normal), ("batch", batch), ("one", batch[:1])):
        np.save(d / f"{name}.npy", a)
    return d


def test_cli_pvalues_fpr_fdr_and_calibrate(cli, cli_model, tmp_path):
    d = cli_model
    est = aelab.load(d / "m")
    batch = np.load(d / "batch.npy")
    code, out, err = cli("score", d / "m", d / "batch.npy", "--pvalues", "--out", tmp_path / "p.npy")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), est.pvalues(batch))
    assert "conformal p-values" in out and "exchangeable with the 40 calibration rows" in out
    code, out, err = cli("score", d / "m", d / "batch.npy", "--fpr", "0.05", "--out", tmp_path / "f.npy")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), est.predict(batch, fpr=0.05))
    assert "false-positive rate on fresh normal rows <= 0.05, if normal rows are exchangeable" in out
    code, out, err = cli("score", d / "m", d / "batch.npy", "--fdr", "0.1", "--out", tmp_path / "q.csv")
    assert code == 0, err
    np.testing.assert_array_equal(aelab.io.read_array(tmp_path / "q.csv").ravel(),
                                  est.predict(batch, fdr=0.1))
    assert "(FDR) <= 0.1" in out
    # calibrate: the model folder now holds the 200 normal rows' scores, and says so
    code, out, err = cli("calibrate", d / "m", d / "normal.npy")
    assert code == 0 and "calibrated" in out, err
    back = aelab.load(d / "m")
    np.testing.assert_array_equal(back.calibration_scores_, np.sort(est.decision_function(np.load(d / "normal.npy"))))
    code, out, _ = cli("score", d / "m", d / "batch.npy", "--pvalues", "--out", tmp_path / "p2.npy")
    assert code == 0 and "200 calibration rows (rows passed to calibrate)" in out
    # calibrating on the training rows is refused, and the model folder is left as it was
    before = (d / "m" / "weights.safetensors").read_bytes()
    code, _, err = cli("calibrate", d / "m", d / "X.npy")
    assert code == 2 and "were part of the fit" in err
    assert (d / "m" / "weights.safetensors").read_bytes() == before


def test_cli_bad_rule_usage_exits_2_and_keeps_the_output(cli, cli_model, tmp_path):
    d = cli_model
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    cases = [
        (["--fdr", "0.1"], d / "one.npy", "the batch has 1 row"),
        (["--pvalues", "--score", "mae"], d / "batch.npy", "Drop --score"),
        (["--fpr", "1.5"], d / "batch.npy", "strictly between 0 and 1"),
        (["--fpr", "0.1", "--fdr", "0.1"], d / "batch.npy", "not allowed with argument"),
    ]
    for extra, data, message in cases:
        code, _, err = cli("score", d / "m", data, *extra, "--out", out)
        assert code == 2 and message in err, (extra, err)
        assert out.read_bytes() == b"precious"
    np.save(tmp_path / "narrow.npy", np.load(d / "normal.npy")[:, :5])
    code, _, err = cli("calibrate", d / "m", tmp_path / "narrow.npy")
    assert code == 2 and "X_normal has 5 features" in err


def test_report_shows_the_pvalue_histogram_and_the_flags_under_each_rule(clean_model):
    pytest.importorskip("matplotlib")
    from aelab.report import model_report

    ae, draw, _ = clean_model
    ae.calibrate(draw(500))
    X = np.concatenate([draw(200), draw(20, shift=3.0)])
    y = np.r_[np.zeros(200, int), np.ones(20, int)]
    sec = next(s for s in model_report(ae, X, y) if s.title == "Decisions with guarantees")
    rows = {r["rule"].split(" (")[0]: r for r in sec.tables["flags under each rule"]}
    assert rows["fpr <= 0.01"]["flagged"] == ae.predict(X, fpr=0.01).sum()
    assert rows["fdr <= 0.05"]["flagged"] == ae.predict(X, fdr=0.05).sum()
    assert rows["fdr <= 0.05"]["anomalies found"] == ae.predict(X, fdr=0.05)[200:].mean()
    assert "exchangeable with the 500 calibration rows" in sec.text and "Storey" in sec.text
    assert "p-value histogram" in sec.figures


def test_pvalues_of_fit_rows_warn(clean_model):
    ae, draw, X_fit = clean_model
    with pytest.warns(AelabWarning, match="3 of the 13 rows of X were part of the fit"):
        ae.pvalues(np.concatenate([draw(10), X_fit[:3]]))
    with pytest.warns(AelabWarning, match="were part of the fit"):
        ae.predict(np.concatenate([draw(10), X_fit[:3]]), fdr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ae.pvalues(draw(10))


@pytest.mark.slow
def test_two_ranks_keep_the_same_calibration_rows_and_hashes():
    import aelab.distributed as D

    X = table(4)(1000)
    params = dict(anomaly_score="mse+latent", epochs=3, random_state=0)
    one = aelab.Autoencoder(batch_size=64, n_threads=1, **params).fit(X)
    two = D.fit(aelab.Autoencoder(batch_size=32, **params), X, nproc=2, threads=1)
    val = validation_rows(1000, 0.1, 0)
    np.testing.assert_allclose(two.calibration_scores_, np.sort(two.decision_function(X[val])), rtol=1e-5)
    np.testing.assert_array_equal(two.fitted_.fit_hashes, one.fitted_.fit_hashes)
    assert two.fitted_.calibration_info == one.fitted_.calibration_info


def test_calibration_scores_travel_in_the_onnx_metadata(clean_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    ae, draw, _ = clean_model
    ae.calibrate(draw(200))
    ae.export_onnx(tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    cal = np.array(json.loads(meta["calibration_scores"]))
    assert json.loads(meta["calibration"]) == {"source": "calibrate", "n": 200, "clean": True}
    X = draw(50)
    np.testing.assert_array_equal(pvalues(ae.decision_function(X), cal), ae.pvalues(X))


def test_set_threshold_contamination_auto_on_a_batch(clean_model):
    ae, draw, _ = clean_model
    ae.calibrate(draw(4000))
    batch = np.concatenate([draw(3600), draw(400, shift=4.0)])
    ae.set_threshold(batch, contamination="auto")
    est = ae.contamination_
    assert ae.threshold_rule_ == {"contamination": "auto", "estimate": est, "n": 4000}
    assert abs(est - 0.1) <= 0.04 and abs(ae.predict(batch).mean() - est) < 0.005
