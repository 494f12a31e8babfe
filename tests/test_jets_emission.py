"""The "emission" score (issue 27): where an image's intensity lies against where the training images light
pixels, the default score of intensity images such as jet images.

Checked against an independent numpy/scipy computation of its formula; against the properties that make it
hold in both directions (no weight on how bright or how busy an image is); saved, loaded, streamed and
in the exported ONNX graph; refused with a clear error where a model has no density.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import aelab
from aelab.datasets import make_jet_images
from aelab.exceptions import ConfigError, NotFittedError
from aelab.heads import EMISSION_BLUR, emission_log_density


def _reference(train, test):
    """The formula of docs/physics.md in numpy: sum_j q_j (-log blur((lit_j + 0.5) / (n + 1)))."""
    lit = (train > 0).reshape(len(train), -1).sum(0)
    side = train.shape[1]
    p = gaussian_filter(((lit + 0.5) / (len(train) + 1)).reshape(train.shape[1:]), EMISSION_BLUR * side,
                        mode="reflect", truncate=4.0)
    q = test.reshape(len(test), -1).astype(np.float64)
    q = q / q.sum(1, keepdims=True)
    return q @ -np.log(p.ravel())


@pytest.mark.parametrize("intensity,scaler", [("auto", "auto"), ("none", "minmax"), ("sqrt", "standard"),
                                              ("sum+log1p", "pixel")])
def test_emission_score_matches_its_formula_whatever_the_preprocessing(intensity, scaler):
    """The head maps the network input back to intensities, so the score does not depend on the preprocessing."""
    X = make_jet_images(200, "qcd", size=40, random_state=0)
    T = np.concatenate([X[:10], make_jet_images(10, "top", size=40, random_state=1)])
    est = aelab.PCA(n_components=3, intensity=intensity, scaler=scaler).fit(X)
    if intensity == "auto":
        assert est.score_ == "emission" and est.scaler_.pre == "sum+sqrt"
    np.testing.assert_allclose(est.decision_function(T, score="emission"), _reference(X, T), rtol=1e-6)
    np.testing.assert_allclose(est.fitted_.emission_log_density,
                               -np.log(gaussian_filter(((X > 0).sum(0) + 0.5) / 201, 2.0)).ravel(), rtol=1e-9)


def test_emission_ignores_how_bright_and_how_busy_an_image_is():
    """A brighter copy of an image scores the same; an image that adds emissions where the training images have
    them scores lower (more normal) even though it is busier; one emission where they never are scores higher."""
    X = make_jet_images(300, "qcd", size=24, random_state=2)
    est = aelab.PCA(n_components=2).fit(X)
    x = X[:1].copy()
    s = lambda a: float(est.decision_function(a)[0])  # noqa: E731
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
    assert est.score_ == "emission"
    est.save(tmp_path / "m")
    back = aelab.load(tmp_path / "m")
    np.testing.assert_array_equal(back.fitted_.emission_log_density, est.fitted_.emission_log_density)
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
    assert two.score_ == one.score_ == "emission"
    np.testing.assert_allclose(two.fitted_.emission_log_density, one.fitted_.emission_log_density, rtol=1e-12)
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
    e = est.explain(T)
    assert e.method == "error" and e.contributions.shape == T.shape
    np.testing.assert_allclose(e.contributions.reshape(6, -1).sum(1), est.decision_function(T), rtol=1e-9)
    assert np.all(e.contributions[T == 0] == 0)
    q = T / T.sum((1, 2), keepdims=True)
    L = est.fitted_.emission_log_density.reshape(12, 12)
    np.testing.assert_allclose(e.contributions, q * L, rtol=1e-6, atol=1e-12)
    got = run_session(onnx_session(est.export_onnx(tmp_path / "a.onnx", output="attribution", dynamo=False)), T)
    np.testing.assert_allclose(got, e.contributions, rtol=1e-4, atol=1e-9)
