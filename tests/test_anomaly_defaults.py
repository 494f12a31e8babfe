"""The default anomaly scores ("auto" -> "relative+latent" / "knn" / "knn+isolation" / "mse+latent") and auto rules."""

import numpy as np
import pytest
import torch

import aelab
from aelab.exceptions import ConfigError
from aelab.scoring import LATENT_RIDGE, RELATIVE_EPS, resolve_score

FAST = dict(epochs=3, random_state=0)


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(8, 3))
    X = (rng.normal(size=(400, 3)) @ A.T + 0.05 * rng.normal(size=(400, 8))).astype(np.float32)
    return X


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return (rng.uniform(0, 1, size=(120, 10, 10)) ** 3 * 255).astype(np.uint8)


def _by_hand(est, X):
    """Every new score computed from the public pieces, in numpy float64."""
    x = est.fitted_.to_net(X).reshape(len(X), -1).astype(np.float64)
    r = est.scaler_.transform(est.reconstruct(X)).reshape(len(X), -1).astype(np.float64)
    mse = ((x - r) ** 2).mean(1)
    rel = ((x - r) ** 2).sum(1) / ((x ** 2).sum(1) + RELATIVE_EPS * x.shape[1])
    Z = est.transform(X).astype(np.float64)
    C = est.latent_cov_
    k = C.shape[0]
    P = np.linalg.inv(C + LATENT_RIDGE * np.trace(C) / k * np.eye(k))
    D = Z - est.latent_mean_
    maha = np.einsum("ij,jk,ik->i", D, P, D)
    return {"relative": rel, "latent": maha, "mse+latent": mse / est.recon_means_[0] + maha / k,
            "relative+latent": rel / est.recon_means_[2] + maha / k}


@pytest.mark.parametrize("cls", [aelab.Autoencoder, aelab.VAE, aelab.PCA])
def test_new_scores_match_hand_computation(cls, table, images):
    kw = {} if cls is aelab.PCA else FAST
    for X in (table, images):
        est = cls(**kw).fit(X)
        hand = _by_hand(est, X)
        for name, want in hand.items():
            np.testing.assert_allclose(est.decision_function(X, score=name), want, rtol=2e-4, atol=1e-6)
        # the recon_means_ are the training means of mse, mae and relative
        np.testing.assert_allclose(est.recon_means_[0], est.decision_function(X, score="mse").mean(), rtol=1e-5)
        np.testing.assert_allclose(est.recon_means_[2], hand["relative"].mean(), rtol=1e-4)
        # the latent Gaussian is the training codes' mean and covariance (PCA: centred, explained variance)
        if cls is not aelab.PCA:
            Z = est.transform(X).astype(np.float64)
            np.testing.assert_allclose(est.latent_mean_, Z.mean(0), rtol=1e-4, atol=1e-6)
            # with mean ~1 per term, the default score averages about 2 on the training images
            # (relative+latent); tables get the bagged neighbour distance ("knn")
            if X is images:
                assert 1.5 < est.decision_scores_.mean() < 2.5
            else:
                assert est.score_ == "knn" and est.decision_scores_.min() > 0


def test_auto_resolves_by_scaler_and_decision_scores_are_training_scores(table, images):
    ae_t = aelab.Autoencoder(**FAST).fit(table)
    ae_i = aelab.Autoencoder(**FAST).fit(images)
    assert ae_t.anomaly_score == "auto" and ae_t.score_ == "knn"
    assert ae_i.score_ == "relative+latent"
    for est, X in ((ae_t, table), (ae_i, images)):
        np.testing.assert_allclose(est.decision_function(X), est.decision_function(X, score=est.score_))
    np.testing.assert_allclose(ae_i.decision_scores_, ae_i.decision_function(images), rtol=1e-6)
    # with the neighbour term a training row's score leaves the row out of its own neighbours (in each bag
    # that holds it): exactly those rows score higher
    from aelab.scoring import KNN_BAGS_CONTAMINATED, KNN_REF_ROWS_CONTAMINATED, knn_distance

    f = ae_t.fitted_
    bags = f.knn_bags
    assert bags == KNN_BAGS_CONTAMINATED and len(f.knn_ref) == bags * KNN_REF_ROWS_CONTAMINATED
    ref = torch.as_tensor(f.knn_ref)
    x = torch.from_numpy(f.to_net(table))
    kept = {r.tobytes() for r in f.knn_ref}  # the training rows drawn into any bag
    own = torch.tensor([r.tobytes() in kept for r in x.reshape(len(x), -1).numpy()])
    assert KNN_REF_ROWS_CONTAMINATED < int(own.sum()) < len(table)
    gap = (knn_distance(x, ref, f.knn_k, exclude_self=own, bags=bags) - knn_distance(x, ref, f.knn_k, bags=bags)).numpy()
    np.testing.assert_allclose(ae_t.decision_scores_ - ae_t.decision_function(table), gap, rtol=1e-5, atol=1e-9)
    assert gap[own.numpy()].min() > 0 and np.abs(gap[~own.numpy()]).max() < 1e-12  # others: rounding only
    assert resolve_score("auto", "minmax") == "relative+latent"
    assert resolve_score("auto", "standard") == "knn"
    assert resolve_score("auto", "standard", novelty=True) == "knn+isolation"
    assert resolve_score("auto", "minmax", novelty=True) == "relative+latent"
    assert resolve_score("auto", "standard", table=False) == "mse+latent"
    assert resolve_score("kl", "minmax") == "kl"
    assert aelab.Autoencoder(anomaly_score="mse", **FAST).fit(table).score_ == "mse"
    with pytest.raises(ConfigError, match="need a VAE"):
        ae_t.decision_function(table, score="elbo")


def test_auto_arch_dense_for_small_images_conv_for_large():
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, size=(8, 28, 28)).astype(np.uint8)
    big = rng.uniform(0, 255, size=(8, 3, 40, 40)).astype(np.uint8)
    assert aelab.Autoencoder(epochs=1, random_state=0).fit(small).model_cfg_.arch == "dense"
    assert aelab.Autoencoder(epochs=1, channels=(4,), random_state=0).fit(big).model_cfg_.arch == "conv"


def test_scores_deterministic_and_saved_loaded_identically(table, images, tmp_path):
    for i, (cls, X) in enumerate([(aelab.Autoencoder, table), (aelab.VAE, images), (aelab.PCA, table)]):
        est = cls(**({} if cls is aelab.PCA else FAST)).fit(X)
        est.save(tmp_path / f"m{i}")
        back = aelab.load(tmp_path / f"m{i}")
        assert back.score_ == est.score_
        np.testing.assert_array_equal(back.recon_means_, est.recon_means_)
        for s in ("auto", "latent", "relative", "mse+latent", "relative+latent"):
            s = None if s == "auto" else s
            a, b = est.decision_function(X, score=s), est.decision_function(X, score=s)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(back.decision_function(X, score=s), a)
        # refitting with the same seed gives the same scores
        again = cls(**({} if cls is aelab.PCA else FAST)).fit(X)
        np.testing.assert_allclose(again.decision_function(X), est.decision_function(X), rtol=1e-6)


def test_default_finds_planted_anomalies():
    """Normal rows lie near a 2-d plane in 10-d; anomalies are off the plane or far along it."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(10, 2))
    X = rng.normal(size=(600, 2)) @ A.T + 0.1 * rng.normal(size=(600, 10))
    off = rng.normal(size=(20, 2)) @ A.T + 1.5 * rng.normal(size=(20, 10))  # off the plane
    far = 6 * rng.normal(size=(20, 2)) @ A.T + 0.1 * rng.normal(size=(20, 10))  # on it, but far out
    X_train = np.concatenate([X[:500], off[:5]]).astype(np.float32)  # contaminated training data
    X_test = np.concatenate([X[500:], off[5:], far]).astype(np.float32)
    y = np.r_[np.zeros(100), np.ones(35)]
    torch.manual_seed(0)
    for cls in (aelab.Autoencoder, aelab.VAE):
        est = cls(random_state=0).fit(X_train)
        s = est.decision_function(X_test)
        assert aelab.metrics.roc_auc(y, s) > 0.95, cls.__name__
        # the latent term is what catches the "far" samples that reconstruct well
        assert np.median(s[-20:]) > np.quantile(s[:100], 0.95)


def test_relative_flags_faint_images_that_mse_misses():
    """Thin strokes reconstruct with a small absolute error; relative to their ink it is large."""
    rng = np.random.default_rng(0)
    n = 300
    X = np.zeros((n, 12, 12), np.float32)
    for i in range(n):  # normal: a filled 6x6 square, jittered
        r, c = rng.integers(2, 5, size=2)
        X[i, r : r + 6, c : c + 6] = rng.uniform(0.7, 1.0)
    faint = np.zeros((30, 12, 12), np.float32)
    for i in range(30):  # anomaly: a thin vertical line
        faint[i, 2:10, rng.integers(3, 9)] = rng.uniform(0.7, 1.0)
    est = aelab.Autoencoder(latent_dim=4, epochs=30, random_state=0).fit(X[:250])
    y = np.r_[np.zeros(50), np.ones(30)]
    Xt = np.concatenate([X[250:], faint])
    assert aelab.metrics.roc_auc(y, est.decision_function(Xt, score="relative")) > 0.95
    assert aelab.metrics.roc_auc(y, est.decision_function(Xt)) > 0.95


def test_trimmed_training_resists_contaminated_training_data():
    # Normal rows lie near one 2-D plane in 10-D, 10% contaminating rows near another.
    # With the plain mean the network learns both planes; leaving the worst-fitted 10%
    # of each batch out of the loss (the default trim) learns mostly the normal plane,
    # so fresh anomalies score higher than fresh normal rows.
    from aelab.metrics import roc_auc

    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(10, 2)), rng.normal(size=(10, 2))

    def rows(n, basis):
        return (rng.normal(size=(n, 2)) @ basis.T + 0.05 * rng.normal(size=(n, 10))).astype(np.float32)

    X_train = np.concatenate([rows(900, A), rows(100, B)])
    X_test, y_test = np.concatenate([rows(500, A), rows(500, B)]), np.r_[np.zeros(500), np.ones(500)]
    auc = {trim: roc_auc(y_test, aelab.Autoencoder(latent_dim=2, trim=trim, epochs=30, random_state=0)
                         .fit(X_train).decision_function(X_test, score="mse"))
           for trim in (0.0, 0.1)}
    assert aelab.Autoencoder().trim == "auto" and aelab.Autoencoder()._trim() == 0.1
    assert auc[0.1] > auc[0.0] + 0.05, auc


def test_novelty_tables_get_the_neighbour_distance(table, images, tmp_path):
    from aelab.scoring import KNN_K_CLEAN as KNN_K, KNN_WEIGHT

    est = aelab.Autoencoder(novelty=True, **FAST).fit(table)
    assert est.score_ == "knn+isolation" and est._trim() == 0.0 and est.fitted_.knn_bags == 1
    assert aelab.Autoencoder(novelty=True, **FAST).fit(images).score_ == "relative+latent"  # images keep theirs
    assert aelab.Autoencoder(**FAST).fit(table).score_ == "knn"  # no statement: maybe contaminated
    # by hand, in float64: mean distance to the 5 nearest training rows (all of them are the reference here)
    ref = est.fitted_.to_net(table).reshape(len(table), -1).astype(np.float64)
    Q = est.fitted_.to_net(table[:50]).reshape(50, -1).astype(np.float64) + 0.3
    d = np.sqrt(((Q[:, None, :] - ref[None]) ** 2).sum(-1))
    dk = np.sort(d, axis=1)[:, :KNN_K].mean(1)
    X_q = est.scaler_.inverse_transform(Q.astype(np.float32))
    np.testing.assert_allclose(est.decision_function(X_q, score="knn"), dk, rtol=1e-4)
    d_ref = np.sqrt(((ref[:, None, :] - ref[None]) ** 2).sum(-1))
    loo = np.sort(d_ref, axis=1)[:, 1 : KNN_K + 1].mean(1)  # each reference row leaves itself out
    assert est.fitted_.knn_mean_sq == pytest.approx((loo ** 2).mean(), rel=1e-4)
    # the default is the distance and the isolation, each over its training mean
    ts = est.fitted_.term_stats
    want = dk / ts["knn"][0] + est.decision_function(X_q, score="isolation") / ts["isolation"][0]
    np.testing.assert_allclose(est.decision_function(X_q), want, rtol=1e-4)
    np.testing.assert_allclose(ts["knn"][0], loo.mean(), rtol=1e-4)  # over the training rows, each left out
    mse = est.decision_function(X_q, score="mse")
    expected = mse / est.recon_means_[0] + KNN_WEIGHT * dk ** 2 / est.fitted_.knn_mean_sq
    np.testing.assert_allclose(est.decision_function(X_q, score="mse+knn"), expected, rtol=1e-4)
    est.save(tmp_path / "m")
    np.testing.assert_array_equal(aelab.load(tmp_path / "m").decision_function(table), est.decision_function(table))
    with pytest.raises(ConfigError, match="reference rows"):
        aelab.Autoencoder(anomaly_score="mse", **FAST).fit(table).decision_function(table, score="knn")


def test_knn_reference_is_the_same_rows_streamed_or_in_memory(tmp_path):
    from aelab.scoring import KNN_REF_ROWS

    rng = np.random.default_rng(0)
    X = rng.normal(size=(KNN_REF_ROWS + 904, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    kw = dict(novelty=True, epochs=1, random_state=0)
    mem = aelab.Autoencoder(**kw).fit(X)
    with aelab.io.open_array(tmp_path / "x.npy", chunk_rows=700) as src:
        streamed = aelab.Autoencoder(**kw).fit(src)
    assert mem.fitted_.knn_ref.shape == (KNN_REF_ROWS, 5)
    np.testing.assert_allclose(streamed.fitted_.knn_ref, mem.fitted_.knn_ref, rtol=1e-6)
    assert streamed.fitted_.knn_mean_sq == pytest.approx(mem.fitted_.knn_mean_sq, rel=1e-6)


@pytest.mark.parametrize("novelty", [True, False])
def test_neighbour_scores_leave_a_training_row_out_of_its_own_neighbours(novelty):
    """The threshold set at fit flags the contamination share of *new* normal rows, not 3x that."""
    rng = np.random.default_rng(0)
    X, X_new = rng.normal(size=(1000, 8)), rng.normal(size=(20_000, 8))
    est = aelab.Autoencoder(novelty=novelty, epochs=2, random_state=0).fit(X)
    assert abs(est.predict(X_new).mean() - 0.1) < 0.03
    assert abs(est.fit_predict(X).mean() - 0.1) < 0.01  # PyOD's labels_: flags by the training scores
    far = (1e4 + rng.normal(size=(2000, 10))).astype(np.float32)  # far from the origin, unscaled
    pca = aelab.PCA(scaler="none", novelty=True, random_state=0).fit(far)
    assert pca.fitted_.knn_mean > 1.0  # ~ sqrt(2 * 10) apart, not 0 from lost digits


def test_the_clean_table_default_is_the_same_distance_for_every_estimator(table):
    """novelty=True on a table: "knn+isolation" (chosen by leave one data set out, benchmarks/tabular.py --lodo),
    which reads only the reference rows and the forest's; with one random_state the three estimators draw the same
    rows (here, more rows than the 4,096 kept) and give the same scores, as docs/anomaly.md says."""
    from aelab.scoring import DEFAULT_CLEAN_TABLE_SCORE, KNN_REF_ROWS

    assert DEFAULT_CLEAN_TABLE_SCORE == "knn+isolation"
    rng = np.random.default_rng(5)
    big = rng.normal(size=(KNN_REF_ROWS + 300, table.shape[1])).astype(np.float32)
    Q = (1.5 * rng.normal(size=(40, table.shape[1]))).astype(np.float32)
    fits = [cls(novelty=True, random_state=3, **({} if cls is aelab.PCA else {"epochs": 1})).fit(big)
            for cls in (aelab.Autoencoder, aelab.VAE, aelab.PCA)]
    assert {f.score_ for f in fits} == {"knn+isolation"}
    assert len(fits[0].fitted_.knn_ref) == KNN_REF_ROWS
    for f in fits[1:]:
        np.testing.assert_array_equal(f.fitted_.knn_ref, fits[0].fitted_.knn_ref)
        np.testing.assert_array_equal(f.decision_function(Q), fits[0].decision_function(Q))
    # a model still offers the network's scores on demand
    assert fits[0].decision_function(Q, score="mse+knn").shape == (40,)
