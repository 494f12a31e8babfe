"""Latent-space tasks: clustering, interpolation, the 2-D manifold, streaming to files."""

import numpy as np
import pytest

import aelab
from aelab import latent
from aelab.exceptions import ConfigError, DataError


@pytest.fixture(scope="module")
def two_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.3, size=(100, 6)) + 3
    b = rng.normal(0, 0.3, size=(100, 6)) - 3
    return np.vstack([a, b]).astype(np.float32), np.repeat([0, 1], 100)


def test_cluster_recovers_separated_groups(two_clusters):
    X, y = two_clusters
    est = aelab.Autoencoder(latent_dim=2, epochs=20, random_state=0).fit(X)
    out = latent.cluster(est, X, k=2, labels=y)
    assert out["labels"].shape == (200,)
    assert out["ari"] > 0.95 and out["nmi"] > 0.9
    raw = latent.cluster(None, X, k=2, labels=y)  # k-means on the raw features, for comparison
    assert raw["ari"] > 0.95
    with pytest.raises(ConfigError, match="k must be"):
        latent.cluster(est, X, k=1)
    with pytest.raises(DataError, match="labels has 3 entries"):
        latent.cluster(est, X, k=2, labels=[0, 1, 0])


def test_interpolation_ends_at_the_reconstructions(two_clusters):
    X, _ = two_clusters
    est = aelab.PCA(n_components=2).fit(X)
    path = latent.interpolate(est, X[0], X[150], steps=5)
    assert path.shape == (5, 6)
    np.testing.assert_allclose(path[0], est.reconstruct(X[:1])[0], atol=1e-4)
    np.testing.assert_allclose(path[-1], est.reconstruct(X[150:151])[0], atol=1e-4)
    np.testing.assert_allclose(path[2], (path[0] + path[-1]) / 2, atol=1e-4)  # PCA decodes linearly


def test_manifold_grid(two_clusters):
    X, _ = two_clusters
    vae = aelab.VAE(latent_dim=2, epochs=2, random_state=0).fit(X)
    grid = latent.manifold(vae, n=4)
    assert grid.shape == (4, 4, 6)
    with pytest.raises(ConfigError, match="latent_dim=2"):
        latent.manifold(aelab.PCA(n_components=3).fit(X))


def test_score_and_encode_to_file_in_memory(two_clusters, tmp_path):
    X, _ = two_clusters
    est = aelab.PCA(n_components=2).fit(X)
    s = latent.score_to_file(est, X, tmp_path / "s.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), s)
    Z = latent.encode_to_file(est, X, tmp_path / "z.csv")
    np.testing.assert_allclose(aelab.io.read_array(tmp_path / "z.csv"), Z, rtol=1e-5, atol=1e-5)


def test_streaming_fit_and_score_match_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(3000, 3)) @ rng.normal(size=(3, 7))).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    src = aelab.io.open_array(tmp_path / "x.npy", chunk_rows=500)
    est = aelab.Autoencoder(latent_dim=3, epochs=3, random_state=0).fit(src)
    assert est.n_features_in_ == 7 and len(est.history_["loss"]) == 3
    # the streamed scaler equals the one fitted in memory
    np.testing.assert_allclose(est.scaler_.offset, X.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(est.scaler_.scale, X.std(0), rtol=1e-4)
    latent.score_to_file(est, src, tmp_path / "s.npy")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), est.decision_function(X), rtol=1e-5)
    latent.encode_to_file(est, src, tmp_path / "z.npy")
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), est.transform(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est.decision_function(src), est.decision_function(X), rtol=1e-5)
