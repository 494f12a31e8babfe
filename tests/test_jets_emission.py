"""The "emission" and "spectrum" scores (issue 27): where an image's intensity lies (and how bright it is there)
against where (and how brightly) the training images light pixels; their sum over the training spreads,
"emission+spectrum", is the default score of intensity images such as jet images.

Checked against an independent numpy/scipy computation of its formula; against the properties that make it
hold in both directions (no weight on how bright or how busy an image is); saved, loaded, streamed and
in the exported ONNX graph; refused with a clear error where a model has no density.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import aelab
from aelab.datasets import make_jet_images
from aelab.emission import EMISSION_BLUR, SPECTRUM_BINS, SPECTRUM_BLUR, SPECTRUM_TAIL, emission_log_density
from aelab.exceptions import ConfigError, NotFittedError


def _reference(train, test):
    """The formula of docs/physics.md in numpy: sum_j q_j (-log blur((lit_j + 0.5) / (n + 1)))."""
    lit = (train > 0).reshape(len(train), -1).sum(0)
    side = train.shape[1]
    p = gaussian_filter(((lit + 0.5) / (len(train) + 1)).reshape(train.shape[1:]), EMISSION_BLUR * side,
                        mode="reflect", truncate=4.0)
    q = test.reshape(len(test), -1).astype(np.float64)
    q = q / q.sum(1, keepdims=True)
    return q @ -np.log(p.ravel())


def _spectrum_reference(train, test):
    """"spectrum" in numpy: sum_j q_j (-log p_jk), p_jk the blurred share of training images lighting pixel j with
    a log intensity in bin k: 12 equal bins between the 0.1% and 99.9% quantiles of the training emissions' log
    intensities (read off a 4,096-bin histogram between their extremes; blurred along the range by one bin)
    and one bin either side of the range."""
    K = SPECTRUM_BINS
    tr = train.reshape(len(train), -1).astype(np.float64)
    lv = np.log(tr[tr > 0])
    fine, edges = np.histogram(lv, bins=4096, range=(lv.min(), lv.max()))
    cdf = np.cumsum(fine) / fine.sum()
    lo = edges[np.searchsorted(cdf, SPECTRUM_TAIL, side="right")]
    width = (edges[np.searchsorted(cdf, 1 - SPECTRUM_TAIL, side="left") + 1] - lo) / K

    def bins(values):
        t = (np.log(values) - lo) / width
        return np.where(t < -1e-6, 0, np.where(t > K + 1e-6, K + 1, np.clip(np.floor(t), 0, K - 1) + 1)).astype(int)

    counts = np.zeros((tr.shape[1], K + 2))
    for row in tr:
        j = np.flatnonzero(row > 0)
        counts[j, bins(row[j])] += 1
    side = train.shape[1]
    p = gaussian_filter(((counts + 0.5) / (len(train) + 1)).reshape(*train.shape[1:], K + 2),
                        (EMISSION_BLUR * side, EMISSION_BLUR * side, 0), mode="reflect", truncate=4.0)
    p[..., 1:-1] = gaussian_filter(p[..., 1:-1], (0, 0, SPECTRUM_BLUR), mode="reflect", truncate=4.0)
    L = -np.log(p.reshape(-1, K + 2))
    te = test.reshape(len(test), -1).astype(np.float64)
    out = np.zeros(len(te))
    for i, row in enumerate(te):
        j = np.flatnonzero(row > 0)
        out[i] = (row[j] / row[j].sum() * L[j, bins(row[j])]).sum()
    return out


@pytest.mark.parametrize("intensity,scaler", [("auto", "auto"), ("none", "minmax"), ("sqrt", "standard"),
                                              ("sum+log1p", "pixel")])
def test_emission_score_matches_its_formula_whatever_the_preprocessing(intensity, scaler):
    """The head maps the network input back to intensities, so the score does not depend on the preprocessing."""
    X = make_jet_images(200, "qcd", size=40, random_state=0)
    T = np.concatenate([X[:10], make_jet_images(10, "top", size=40, random_state=1)])
    est = aelab.PCA(n_components=3, intensity=intensity, scaler=scaler).fit(X)
    if intensity == "auto":
        assert est.score_ == "emission+spectrum" and est.scaler_.pre == "sqrt"
    np.testing.assert_allclose(est.decision_function(T, score="emission"), _reference(X, T), rtol=1e-6)
    np.testing.assert_allclose(est.fitted_.emission_log_density,
                               -np.log(gaussian_filter(((X > 0).sum(0) + 0.5) / 201, 2.0)).ravel(), rtol=1e-9)


def test_emission_ignores_how_bright_and_how_busy_an_image_is():
    """A brighter copy of an image scores the same; an image that adds emissions where the training images have
    them scores lower (more normal) even though it is busier; one emission where they never are scores higher."""
    X = make_jet_images(300, "qcd", size=24, random_state=2)
    est = aelab.PCA(n_components=2).fit(X)
    x = X[:1].copy()
    s = lambda a: float(est.decision_function(a, score="emission")[0])  # noqa: E731
    assert s(5.0 * x) == pytest.approx(s(x), rel=1e-6)
    often = np.unravel_index(np.argmin(est.fitted_.emission_log_density), X.shape[1:])
    never = np.unravel_index(np.argmax(est.fitted_.emission_log_density), X.shape[1:])
    busier = x.copy()
    busier[(0, *often)] += x.sum()
    assert s(busier) < s(x)
    odd = x.copy()
    odd[(0, *never)] = x.max()
    assert s(odd) > s(x)


def test_emission_density_blur_and_edges():
    """Lit counts of one corner pixel: the density spreads around it, mirrored at the edges, and integrates."""
    lit = np.zeros((10, 10))
    lit[0, 0] = 9.0
    L = emission_log_density(lit.ravel(), 9, (0, 1), (10, 10)).reshape(10, 10)
    p = np.exp(-L)
    ref = gaussian_filter((lit + 0.5) / 10, EMISSION_BLUR * 10, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    assert p.sum() == pytest.approx(((lit + 0.5) / 10).sum())
    assert np.argmax(p) == 0


def test_emission_is_saved_and_runs_in_the_onnx_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    from aelab.export.onnx import onnx_session, run_session

    X = make_jet_images(150, "top", size=16, random_state=3)
    T = np.concatenate([X[:20], make_jet_images(20, "qcd", size=16, random_state=4)])
    est = aelab.Autoencoder(latent_dim=3, hidden=(16,), epochs=2, random_state=0).fit(X)
    assert est.score_ == "emission+spectrum"
    est.save(tmp_path / "m")
    back = aelab.load(tmp_path / "m")
    np.testing.assert_array_equal(back.fitted_.emission_log_density, est.fitted_.emission_log_density)
    np.testing.assert_array_equal(back.fitted_.spectrum[0], est.fitted_.spectrum[0])
    assert back.fitted_.spectrum[1:] == est.fitted_.spectrum[1:]
    np.testing.assert_array_equal(back.decision_function(T), est.decision_function(T))
    score = run_session(onnx_session(est.export_onnx(tmp_path / "s.onnx", dynamo=False)), T)
    np.testing.assert_allclose(score, est.decision_function(T), rtol=1e-5)
    # the training scores and the threshold come from the same head
    np.testing.assert_allclose(est.decision_scores_, est.decision_function(X), rtol=1e-6)


def test_emission_of_streamed_training_rows_and_of_rgb_images(tmp_path):
    X = make_jet_images(200, "qcd", size=12, random_state=5)
    np.save(tmp_path / "x.npy", X)
    mem = aelab.PCA(n_components=2).fit(X)
    with aelab.io.open_array(tmp_path / "x.npy", chunk_rows=45) as src:
        streamed = aelab.PCA(n_components=2).fit(src)
    np.testing.assert_allclose(streamed.fitted_.emission_log_density, mem.fitted_.emission_log_density, rtol=1e-12)
    np.testing.assert_allclose(streamed.fitted_.spectrum[0], mem.fitted_.spectrum[0], rtol=1e-12)
    np.testing.assert_allclose(streamed.fitted_.spectrum[1:], mem.fitted_.spectrum[1:], rtol=1e-12)
    # channels-last colour images: the blur runs over the grid, each channel its own map
    rgb = (np.random.default_rng(0).random((60, 8, 8, 3)) * 255).round().astype(np.uint8)
    rgb[:, :, :4, 0] = 0  # channel 0 is never lit on the left half
    col = aelab.PCA(n_components=2).fit(rgb)
    L = col.fitted_.emission_log_density.reshape(8, 8, 3)
    assert L[:, 0, 0].min() > L[:, 7, 0].max() and np.ptp(L[:, :, 1]) < 0.1


def test_emission_needs_an_image_model():
    rng = np.random.default_rng(0)
    tab = aelab.PCA(n_components=2).fit(rng.normal(size=(100, 6)))
    assert tab.fitted_.emission_log_density is None
    with pytest.raises(ConfigError, match="emission density of the training images.*fitted on a table"):
        tab.decision_function(rng.normal(size=(5, 6)), score="emission")
    est = aelab.Autoencoder(anomaly_score="emission", epochs=1)
    with pytest.raises(ConfigError, match="'emission' is the density of where images are lit, but X is read as a"):
        est.fit(rng.normal(size=(50, 6)))
    with pytest.raises(NotFittedError):  # the failed fit changed nothing
        est.fitted_


@pytest.mark.slow
def test_two_ranks_add_their_counts_of_lit_pixels():
    """Data-parallel (real torchrun ranks over gloo): each rank counts its shard; the density is the one of all rows."""
    import aelab.distributed as D

    X = make_jet_images(240, "top", size=12, random_state=6)
    T = make_jet_images(40, "qcd", size=12, random_state=7)
    one = aelab.PCA(n_components=2).fit(X)
    two = D.fit(aelab.PCA(n_components=2), X, nproc=2, threads=1)
    assert two.score_ == one.score_ == "emission+spectrum"
    np.testing.assert_allclose(two.fitted_.emission_log_density, one.fitted_.emission_log_density, rtol=1e-12)
    np.testing.assert_allclose(two.fitted_.spectrum[0], one.fitted_.spectrum[0], rtol=1e-12)
    np.testing.assert_allclose(two.fitted_.spectrum[1:], one.fitted_.spectrum[1:], rtol=1e-12)
    np.testing.assert_allclose(two.decision_function(T), one.decision_function(T), rtol=1e-9)
    np.testing.assert_allclose(two.decision_scores_, one.decision_scores_, rtol=1e-9)


def test_emission_is_explained_pixel_by_pixel_in_python_and_in_the_onnx_graph(tmp_path):
    """The "error" explanation of "emission" is each pixel's own term w_j (-log p_j): it sums to the score, is zero
    on unlit pixels, and the exported attribution graph gives the same values."""
    pytest.importorskip("onnxruntime")
    from aelab.export.onnx import onnx_session, run_session

    X = make_jet_images(200, "qcd", size=12, random_state=8)
    T = make_jet_images(6, "top", size=12, random_state=9)
    est = aelab.Autoencoder(latent_dim=3, hidden=(16,), epochs=2, random_state=0).fit(X)
    e = est.explain(T, score="emission")
    assert e.method == "error" and e.contributions.shape == T.shape
    np.testing.assert_allclose(e.contributions.reshape(6, -1).sum(1), est.decision_function(T, score="emission"),
                               rtol=1e-9)
    assert np.all(e.contributions[T == 0] == 0)
    q = T / T.sum((1, 2), keepdims=True)
    L = est.fitted_.emission_log_density.reshape(12, 12)
    np.testing.assert_allclose(e.contributions, q * L, rtol=1e-6, atol=1e-12)
    got = run_session(onnx_session(est.export_onnx(tmp_path / "a.onnx", output="attribution", score="emission",
                                                   dynamo=False)), T)
    np.testing.assert_allclose(got, e.contributions, rtol=1e-4, atol=1e-9)
    # the default (emission + spectrum): each term's own per-pixel split, weighted as the sum weighs them
    d = est.explain(T)
    assert d.method == "error" and d.score_name == "emission+spectrum"
    np.testing.assert_allclose(d.contributions.reshape(6, -1).sum(1), est.decision_function(T), rtol=1e-9)
    assert np.all(d.contributions[T == 0] == 0)
    sd = {t: est.fitted_.term_stats[t][1] for t in ("emission", "spectrum")}
    with_background = est.explain(T, background=X[:50])  # "auto" keeps the exact split (aelab report passes one)
    assert with_background.method == "error" and "per-pixel split" in with_background.note
    np.testing.assert_array_equal(with_background.contributions, d.contributions)
    # the table of reasons names lit pixels only (a dark pixel's 0 is no reason)
    lit = (T > 0).reshape(6, -1)
    rows = d.table(T, top=10)
    assert rows and all(r["value"] > 0 for r in rows)
    assert [sum(r["row"] == i for r in rows) for i in range(6)] == [min(10, int(n)) for n in lit.sum(1)]
    spec = est.explain(T, score="spectrum").contributions
    np.testing.assert_allclose(d.contributions, e.contributions / sd["emission"] + spec / sd["spectrum"], rtol=1e-9)


@pytest.mark.parametrize("intensity,scaler", [("auto", "auto"), ("none", "minmax"), ("log1p", "standard")])
def test_spectrum_matches_its_formula(intensity, scaler):
    """Preprocessings that keep each image's scale: the head reads the intensities back exactly."""
    X = make_jet_images(200, "qcd", size=20, random_state=10)
    T = np.concatenate([X[:10], make_jet_images(10, "top", size=20, random_state=11)])
    est = aelab.PCA(n_components=3, intensity=intensity, scaler=scaler).fit(X)
    np.testing.assert_allclose(est.decision_function(T, score="spectrum"), _spectrum_reference(X, T), rtol=1e-6)


def test_spectrum_sees_how_bright_an_emission_is_where_emission_does_not():
    """An image whose emissions sit where the training images have them, but far brighter than they ever are
    there, is as normal as before to "emission" and anomalous to "spectrum" and to the default."""
    X = make_jet_images(300, "qcd", size=24, random_state=12)
    est = aelab.PCA(n_components=2).fit(X)
    x = X[:1].astype(np.float64)
    bright = 30.0 * x
    f = lambda a, s=None: float(est.decision_function(a, score=s)[0])  # noqa: E731
    assert f(bright, "emission") == pytest.approx(f(x, "emission"), rel=1e-6)
    assert f(bright, "spectrum") > f(x, "spectrum") + 1.0  # brighter than any training emission there
    assert f(bright) > np.quantile(est.decision_scores_, 0.99) > f(x)


def test_spectrum_range_holds_against_an_outlier_and_a_single_value():
    """The bins span the bulk of the training emissions (all but 0.1% at either end): one training image of 1,500
    10^4 times too bright (a hot detector, a contaminated training set) leaves them where they were; a training
    set whose lit pixels all hold one value does not slice its float rounding into bins (a change of one part in
    a million stays in the same bin)."""
    X = make_jet_images(1500, "qcd", size=16, random_state=14)
    clean = aelab.PCA(n_components=2).fit(X).fitted_.spectrum
    dirty = X.copy()
    dirty[0] *= 1e4
    est = aelab.PCA(n_components=2).fit(dirty)
    assert est.fitted_.spectrum[2] == pytest.approx(clean[2], rel=0.05)
    assert est.fitted_.spectrum[1] == pytest.approx(clean[1], abs=0.05)
    flat = 4.0 * (X > 0)
    one = aelab.PCA(n_components=2).fit(flat)
    x = flat[:1]
    s = lambda a: float(one.decision_function(a, score="spectrum")[0])  # noqa: E731
    assert s(x * (1 + 1e-6)) == pytest.approx(s(x), rel=1e-9)
    assert s(x * 2.0) > s(x) + 1.0  # twice as bright as every training emission: outside the range


def test_emission_maps_of_channels_last_images_are_in_the_images_layout():
    """(n, h, w, c) intensity images: each pixel's term sits on that pixel (zero where it is dark), as q_j (-log p_j)
    in the user's layout."""
    rng = np.random.default_rng(15)
    X = (rng.random((120, 8, 6, 3)) * (rng.random((120, 8, 6, 3)) < 0.3) * 500).astype(np.float32)
    est = aelab.PCA(n_components=2, input_kind="image").fit(X)
    assert est.channels_last_
    T = X[:4]
    e = est.explain(T, score="emission")
    q = T / T.sum((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(e.contributions, q * est.fitted_.emission_log_density.reshape(8, 6, 3), rtol=1e-6,
                               atol=1e-12)
    assert np.all(e.contributions[T == 0] == 0)


def test_spectrum_needs_what_an_older_model_did_not_keep():
    """A model saved without the spectrum (an older aelab) still scores "emission" and refuses "spectrum"."""
    X = make_jet_images(100, "qcd", size=12, random_state=13)
    est = aelab.PCA(n_components=2, anomaly_score="emission").fit(X)
    est.__dict__["_fitted"] = est.fitted_.replace(spectrum=None)  # the state an older folder loads into
    assert np.isfinite(est.decision_function(X[:3])).all()
    with pytest.raises(ConfigError, match="saved by an older aelab.*score='emission'"):
        est.decision_function(X[:3], score="spectrum")
