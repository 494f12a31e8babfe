"""est.explain: contributions that add up to the score, closed-form Shapley values equal to brute force,
correlated features credited correctly, every input layout, and the ``aelab explain`` command."""

import csv

import numpy as np
import pytest
import torch

import aelab
from aelab.cli import main
from aelab.exceptions import ConfigError
from aelab.explain import _closed_form, _quadratic_form, _sampled, shapley_enumerate
from aelab.shapley import Gaussian, _PointScorer


def _table(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, 3))
    return (rng.normal(size=(n, 3)) @ L.T + 0.2 * rng.normal(size=(n, d))).astype("float32")


@pytest.fixture(scope="module")
def X():
    return _table()


@pytest.fixture(scope="module")
def ae(X):
    return aelab.Autoencoder(latent_dim=2, epochs=8, random_state=0).fit(X)


def _scorer(est, score=None):
    """The real scorer on raw rows (hybrid rows of raw values are hybrid rows of scaled values)."""
    return lambda P: est.decision_function(np.asarray(P, dtype=np.float32), score=score)


@pytest.mark.parametrize("score", ["mse", "mae", "relative", "latent", "mse+latent", "relative+latent", "knn",
                                   "mse+knn", "mse+latent+knn"])
def test_error_contributions_add_up_to_every_score(ae, X, score):
    e = ae.explain(X[:40], method="error", score=score)
    assert e.exact and e.method == "error" and e.base_value == 0.0
    assert e.contributions.shape == (40, X.shape[1])
    np.testing.assert_allclose(e.score, ae.decision_function(X[:40], score=score))
    np.testing.assert_allclose(e.flat.sum(axis=1), e.score, rtol=1e-5, atol=1e-7)
    if score in ("mse", "mae", "relative", "knn"):  # sums of non-negative per-feature terms
        assert (e.flat >= 0).all()


def test_error_mse_terms_are_the_feature_errors(ae, X):
    e = ae.explain(X[:10], method="error", score="mse")
    np.testing.assert_allclose(e.contributions, ae.feature_errors(X[:10]) / X.shape[1], rtol=1e-5, atol=1e-9)


def test_error_for_the_vae_scores(X):
    vae = aelab.VAE(latent_dim=2, epochs=3, random_state=0).fit(X)
    for score in ("mu_norm", "kl", "elbo"):
        e = vae.explain(X[:20], method="error", score=score)
        np.testing.assert_allclose(e.flat.sum(axis=1), vae.decision_function(X[:20], score=score), rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: aelab.PCA(n_components=2, anomaly_score="mse+latent"),
                                  lambda: aelab.Autoencoder(latent_dim=2, linear=True, epochs=40,
                                                            anomaly_score="mse+latent", random_state=0)],
                         ids=["pca", "linear-ae"])
@pytest.mark.parametrize("score", ["mse", "latent", "mse+latent"])
def test_closed_form_equals_brute_force_shapley(X, make, score):
    est = make().fit(X)
    bg = X[100:115]
    e = est.explain(X[:3], method="shapley", background=bg, score=score, dependence="independent")
    assert e.exact and e.algorithm == "closed form"
    fn = _scorer(est, score)
    for i in range(3):
        phi, base = shapley_enumerate(fn, X[i], bg)
        scale = np.abs(phi).max()
        np.testing.assert_allclose(e.flat[i], phi, atol=2e-5 * scale)
        np.testing.assert_allclose(e.base_value, base, rtol=1e-5)
    np.testing.assert_allclose(e.residual(), 0, atol=1e-4)


def test_brute_force_enumeration_is_shapley_on_a_known_game():
    # f(x) = x0 * x1 + 3 x2 against the background row 0: the product splits evenly
    fn = lambda P: P[:, 0] * P[:, 1] + 3 * P[:, 2]  # noqa: E731
    phi, base = shapley_enumerate(fn, np.array([2.0, 5.0, 1.0]), np.zeros((1, 3)))
    np.testing.assert_allclose(phi, [5.0, 5.0, 3.0])
    assert base == 0.0


def test_sampled_shapley_adds_up_and_its_error_is_honest(X):
    """The sampler on a quadratic score: the sum is exact, and the closed form lies within the reported errors."""
    pca = aelab.PCA(n_components=2, anomaly_score="mse").fit(X)
    f = pca.fitted_
    A, c, c0 = _quadratic_form(f, "mse", f.score_stats())
    def fn(P):
        P = np.asarray(P, dtype=np.float64)
        return np.einsum("nd,de,ne->n", P, A, P) + P @ c + c0
    Xn, Bn = f.to_net(X[:30]).astype(np.float64), f.to_net(X[100:160]).astype(np.float64)
    exact, base = _closed_form(Xn, Bn, A, c, c0)
    fB, fX = fn(Bn), fn(Xn)
    phi, se = _sampled(fn, Xn, Bn, np.arange(X.shape[1]), 24, np.random.default_rng(0), fX, fB, float(fB.mean()))
    np.testing.assert_allclose(phi.sum(axis=1), fX - fB.mean(), rtol=1e-9, atol=1e-9)
    z = np.abs(phi - exact) / np.maximum(se, 1e-12)
    assert np.mean(z < 3) > 0.95, np.sort(z.ravel())[-10:]
    assert np.median(se) > 0


def test_sampled_shapley_of_a_nonlinear_model_adds_up(ae, X):
    e = ae.explain(X[:15], method="shapley", n_permutations=8)
    assert not e.exact and e.algorithm == "permutation sampling, conditional (Gaussian)"
    assert e.error.shape == e.contributions.shape and (e.error >= 0).all()
    np.testing.assert_allclose(e.base_value + e.flat.sum(axis=1), ae.decision_function(X[:15]), rtol=1e-9)
    again = ae.explain(X[:15], method="shapley", n_permutations=8)
    np.testing.assert_array_equal(e.contributions, again.contributions)  # seeded


def _correlated(n=600, seed=1):
    """x2 = (x0 + x1) / sqrt 2: an anomaly that moves x0 alone leaves the largest error on x2."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, n))
    X = np.stack([a, b, (a + b) / np.sqrt(2) + 0.05 * rng.normal(size=n)], 1).astype("float32")
    x = np.array([[0.3, -0.2, 0.07]], dtype="float32")
    x[0, 0] += 3.0  # breaks the relation through x0
    return X, x


def test_planted_feature_ranks_first_under_shapley_not_under_raw_error():
    X, x = _correlated()
    pca = aelab.PCA(n_components=2, anomaly_score="mse").fit(X)
    raw = pca.feature_errors(x)[0]
    assert np.argmax(raw) != 0 and np.argsort(-raw).tolist().index(0) >= 1
    e = pca.explain(x, background=X[:200], dependence="independent")
    assert e.algorithm == "closed form" and "closed-form" in e.note
    assert e.top(1)[0, 0] == 0


def test_planted_feature_ranks_first_for_a_sampled_nonlinear_model():
    X, x = _correlated()
    ae = aelab.Autoencoder(latent_dim=2, hidden=(16,), epochs=30, anomaly_score="mse", novelty=True,
                           random_state=0).fit(X)
    e = ae.explain(x, method="shapley", background=X[:200], n_permutations=32)
    assert e.top(1)[0, 0] == 0


def test_image_attributions_have_the_input_shape():
    rng = np.random.default_rng(0)
    imgs = (rng.random((120, 8, 8)) * 0.2).astype("float32")
    imgs[:, 2:6, 2:6] += 0.6
    est = aelab.Autoencoder(latent_dim=3, epochs=3, random_state=0).fit(imgs)
    assert est.input_kind_ == "image"
    test = imgs[:4].copy()
    test[:, 0:2, 6:8] = 1.0
    e = est.explain(test)
    assert e.method == "error" and e.contributions.shape == (4, 8, 8)  # auto: non-linear images
    np.testing.assert_allclose(e.flat.sum(axis=1), est.decision_function(test), rtol=1e-5)
    s = est.explain(test, method="shapley", background=imgs[:20], patch=4, n_permutations=8)
    assert s.contributions.shape == (4, 8, 8) and "4x4 patches" in s.algorithm
    np.testing.assert_allclose(s.base_value + s.flat.sum(axis=1), s.score, rtol=1e-9)
    # one patch's value is shared among its pixels in proportion to their squared reconstruction error
    f = est.fitted_
    err = ((f.to_net(test) - f.to_net(est.reconstruct(test))) ** 2).reshape(4, 8, 8)
    block, e_block = s.contributions[0, 4:, 4:], err[0, 4:, 4:]
    np.testing.assert_allclose(block / block.sum(), e_block / e_block.sum(), rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="patch"):
        est.explain(test, method="shapley", background=imgs[:20], patch=0)
    # with background images, "auto" samples Shapley values against each image's 20 nearest of them
    bg = imgs[20:80]
    a = est.explain(test, background=bg, patch=4, n_permutations=8)
    assert a.method == "shapley" and "20 nearest" in a.note and np.shape(a.base_value) == (4,)
    d = ((f.to_net(test)[:, None] - f.to_net(bg)[None]) ** 2).sum(-1)
    bg_scores = est.decision_function(bg)
    for i in range(4):
        assert a.base_value[i] == pytest.approx(bg_scores[np.argsort(d[i])[:20]].mean(), rel=1e-5)
    every = est.explain(test, background=bg, patch=4, n_permutations=8, nearest=None)
    assert np.ndim(every.base_value) == 0 and every.base_value == pytest.approx(bg_scores.mean(), rel=1e-5)


def test_collider_arrays_are_explained_per_object_and_feature():
    rng = np.random.default_rng(0)
    ev = rng.normal(size=(200, 3, 2)).astype("float32") * 5.0
    est = aelab.Autoencoder(latent_dim=2, epochs=3, random_state=0).fit(ev)
    assert est.input_kind_ == "table"
    e = est.explain(ev[:5], n_permutations=8)
    assert e.contributions.shape == (5, 3, 2) and e.method == "shapley"
    assert e.labels()[:2] == ["[0, 0]", "[0, 1]"]


def test_feature_names_come_from_a_dataframe(X):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = aelab.PCA(n_components=2, anomaly_score="mse").fit(X)
    e = est.explain(df.iloc[:3], method="error")
    assert e.feature_names == list(df.columns)
    rows = e.table(df.iloc[:3].to_numpy(), top=2)
    assert len(rows) == 6 and rows[0]["feature"] in df.columns and rows[0]["rank"] == 1


def test_bad_arguments_are_clear(ae, X):
    with pytest.raises(ConfigError, match="method"):
        ae.explain(X[:2], method="lime")
    with pytest.raises(ConfigError, match="n_permutations"):
        ae.explain(X[:2], method="shapley", n_permutations=2)
    pca = aelab.PCA(n_components=2, anomaly_score="mse").fit(X)
    with pytest.raises(ConfigError, match="background"):
        pca.explain(X[:2], method="shapley")
    assert pca.explain(X[:2]).method == "error"  # auto without a background
    with pytest.raises(ConfigError, match="reference rows"):
        pca.explain(X[:2], method="error", score="knn")


def test_cli_writes_the_table_and_exits_2_on_bad_input(tmp_path, X, capsys):
    header = ",".join(f"c{i}" for i in range(X.shape[1]))
    data = tmp_path / "data.csv"
    np.savetxt(data, X, delimiter=",", header=header, comments="")
    model = tmp_path / "model"
    aelab.Autoencoder(latent_dim=2, epochs=3, random_state=0).fit(X).save(model)
    out = tmp_path / "why.csv"
    assert main(["explain", str(model), str(data), "--rows", "0,5-7", "--top", "3", "--method", "error",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["row"] for r in rows] == ["0"] * 3 + ["5"] * 3 + ["6"] * 3 + ["7"] * 3
    assert rows[0]["feature"].startswith("c") and float(rows[0]["contribution"]) >= float(rows[1]["contribution"])
    assert float(rows[0]["value"]) == pytest.approx(X[0, int(rows[0]["feature"][1:])], rel=1e-6)
    printed = capsys.readouterr().out
    assert "row 0" in printed or "row 5" in printed
    # flagged rows by default, Parquet too
    assert main(["explain", str(model), str(data), "--out", str(tmp_path / "why.parquet")]) == 0
    before = out.read_bytes()
    for argv, message in [(["--rows", "999"], "999"), (["--rows", "x"], "--rows"),
                          (["--out", str(tmp_path / "why.npy")], ".csv or .parquet")]:
        assert main(["explain", str(model), str(data), *argv]) == 2
        assert message in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, X[:, :3])
    assert main(["explain", str(model), str(bad), "--out", str(out)]) == 2
    assert "3 features" in capsys.readouterr().err
    assert out.read_bytes() == before  # a failed run leaves the earlier table


def test_report_why_flagged_section(X):
    from aelab.report import model_report

    est = aelab.Autoencoder(latent_dim=2, epochs=3, random_state=0).fit(X)
    Xt = X[:60].copy()
    Xt[7, 2] += 12.0  # the most anomalous row, through feature 2
    sec = {s.title: s for s in model_report(est, Xt)}["Why flagged"]
    rows = sec.tables["top features of the most anomalous rows"]
    assert rows[0]["row"] == 7 and rows[0]["rank"] == 1 and rows[0]["feature"] == "2"
    assert rows[0]["value"] == pytest.approx(Xt[7, 2])
    assert rows[0]["scaled (sd from the training mean)"] > 3
    assert "add up to its score" in sec.text

    rng = np.random.default_rng(0)
    imgs = (rng.random((80, 8, 8)) * 0.3).astype("float32")
    ie = aelab.Autoencoder(latent_dim=2, epochs=2, random_state=0).fit(imgs)
    sec = {s.title: s for s in model_report(ie, imgs[:20])}["Why flagged"]
    fig = sec.figures["most anomalous inputs, reconstructions and contributions"]
    assert [a.get_title() for a in fig.axes] == ["input", "reconstruction", "contribution to the score"]
    assert "error (decomposition, exact)" in sec.text  # under 20 unflagged images: no background to compare with
    sec = {s.title: s for s in model_report(ie, imgs)}["Why flagged"]  # enough unflagged images to compare with
    assert "shapley (permutation sampling" in sec.text and "sampled" in sec.text


@pytest.mark.parametrize("make", [lambda X: aelab.Autoencoder(latent_dim=2, epochs=3, random_state=0).fit(X),
                                  lambda X: aelab.PCA(n_components=2, anomaly_score="relative+latent").fit(X)],
                         ids=["ae-default", "pca-relative+latent"])
def test_onnx_attribution_matches_explain_error(tmp_path, X, make):
    import onnxruntime as ort

    est = make(X)
    path = est.export_onnx(tmp_path / "attr.onnx", output="attribution")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    a = sess.run(None, {name: X[:37]})[0]  # any batch size
    e = est.explain(X[:37], method="error")
    assert a.shape == e.contributions.shape and a.dtype == np.float64
    np.testing.assert_allclose(a, e.contributions, rtol=1e-4, atol=1e-5 * np.abs(e.flat).max())
    score = ort.InferenceSession(str(est.export_onnx(tmp_path / "s.onnx")), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(a.reshape(37, -1).sum(axis=1), score.run(None, {name: X[:37]})[0], rtol=1e-6)


def test_onnx_attribution_of_images_has_their_shape(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    imgs = rng.random((100, 8, 8)).astype("float32")
    est = aelab.Autoencoder(latent_dim=2, epochs=2, random_state=0).fit(imgs)
    sess = ort.InferenceSession(str(est.export_onnx(tmp_path / "a.onnx", output="attribution")),
                                providers=["CPUExecutionProvider"])
    a = sess.run(None, {sess.get_inputs()[0].name: imgs[:5]})[0]
    e = est.explain(imgs[:5], method="error")
    assert a.shape == (5, 8, 8)
    np.testing.assert_allclose(a, e.contributions, rtol=1e-4, atol=1e-4 * np.abs(e.flat).max())
    np.testing.assert_allclose(a.sum(axis=(1, 2)), e.score, rtol=1e-5)


def test_nearest_background_is_shapley_against_each_rows_neighbours(X):
    pca = aelab.PCA(n_components=2, anomaly_score="mse").fit(X)
    bg = X[100:160]
    e = pca.explain(X[:3], background=bg, nearest=5, dependence="independent")
    assert e.algorithm == "closed form" and np.shape(e.base_value) == (3,)
    np.testing.assert_allclose(e.residual(), 0, atol=1e-5)
    to_net = pca.fitted_.to_net  # neighbours in the scaled units the network sees
    d = ((to_net(X[:3])[:, None, :] - to_net(bg)[None]) ** 2).sum(-1)
    fn = _scorer(pca)
    for i in range(3):
        phi, base = shapley_enumerate(fn, X[i], bg[np.argsort(d[i])[:5]])
        np.testing.assert_allclose(e.flat[i], phi, atol=2e-5 * np.abs(phi).max())
        assert e.base_value[i] == pytest.approx(base, rel=1e-5)
    ae = aelab.Autoencoder(latent_dim=2, epochs=3, random_state=0).fit(X)
    s = ae.explain(X[:4], method="shapley", nearest=10, n_permutations=8)
    assert np.shape(s.base_value) == (4,)
    np.testing.assert_allclose(s.base_value + s.flat.sum(axis=1), s.score, rtol=1e-9)
    assert np.ndim(ae.explain(X[:4], method="shapley", n_permutations=8).base_value) == 0  # tables: all rows
    with pytest.raises(ConfigError, match="nearest"):
        ae.explain(X[:2], nearest=0)


# ------------------------------------------------------------------ dependent features (dependence="gaussian")
def test_gaussian_imputation_keeps_the_backgrounds_correlations():
    """Outside a coalition, inputs move with those inside along the background's regression."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=4000)
    B = np.stack([a, 2 * a + 0.01 * rng.normal(size=4000), rng.normal(size=4000)], 1)
    g = Gaussian(B, ridge=1e-9)
    x, b = torch.tensor([[1.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    p = g.fill(x, b, np.array([True, False, False])).numpy()[0]
    assert p[0] == 1.0 and p[1] == pytest.approx(2.0, abs=0.01) and abs(p[2]) < 0.05
    np.testing.assert_array_equal(g.fill(x, b, np.ones(3, bool)).numpy(), x.numpy())
    np.testing.assert_array_equal(g.fill(x, b, np.zeros(3, bool)).numpy(), b.numpy())


def test_gaussian_sampler_matches_enumeration_within_its_error(X):
    """Conditional Shapley values by the sampler lie within the reported errors of the exact enumeration."""
    ae = aelab.Autoencoder(latent_dim=2, hidden=(8,), epochs=5, anomaly_score="mse", random_state=0).fit(X)
    f = ae.fitted_
    bg = X[100:112]
    e = ae.explain(X[:6], method="shapley", background=bg, n_permutations=64)
    assert e.algorithm == "permutation sampling, conditional (Gaussian)" and "conditionally" in e.note
    np.testing.assert_allclose(e.base_value + e.flat.sum(axis=1), e.score, rtol=1e-9)
    fn = _PointScorer(f, "mse", None)  # scores points in the scaled units, where the imputation happens
    g = Gaussian(f.to_net(bg).reshape(len(bg), -1))
    z = []
    for i in range(6):
        phi, base = shapley_enumerate(fn, f.to_net(X[i : i + 1])[0], f.to_net(bg), gaussian=g)
        assert base == pytest.approx(e.base_value, rel=1e-5)
        z.append(np.abs(e.flat[i] - phi) / np.maximum(e.error.reshape(6, -1)[i], 1e-9))
    z = np.concatenate(z)
    assert np.mean(z < 3) > 0.9, np.sort(z)[-5:]


def test_gaussian_credits_the_feature_that_left_the_plane_where_independent_does_not():
    """30 features on 5 factors; in each of 40 rows one feature moved off the factors' plane. Interventional
    values also credit every feature far from the background row (which breaks the factors); conditional
    ones keep the factors and credit the moved feature, at least as often as raw per-feature error does."""
    rng = np.random.default_rng(1)
    W = rng.normal(size=(5, 30))
    X = (rng.normal(size=(3000, 5)) @ W + 0.3 * rng.normal(size=(3000, 30))).astype("float32")
    A = (rng.normal(size=(40, 5)) @ W + 0.3 * rng.normal(size=(40, 30))).astype("float32")
    moved = rng.integers(0, 30, size=40)
    A[np.arange(40), moved] += rng.choice([-1, 1], 40) * 1.8
    pca = aelab.PCA(n_components=5, anomaly_score="mse").fit(X)
    hit = lambda a: np.mean(np.argmax(a.reshape(40, -1), axis=1) == moved)  # noqa: E731
    ind = pca.explain(A, background=X[:300], dependence="independent")
    gau = pca.explain(A, background=X[:300], n_permutations=16)
    assert ind.algorithm == "closed form" and gau.algorithm.endswith("conditional (Gaussian)")
    assert hit(gau.flat) >= hit(pca.feature_errors(A)) and hit(gau.flat) >= hit(ind.flat) + 0.15, (
        hit(gau.flat), hit(pca.feature_errors(A)), hit(ind.flat))
    np.testing.assert_allclose(gau.base_value + gau.flat.sum(axis=1), gau.score, rtol=1e-9)
