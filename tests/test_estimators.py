"""The estimator contract: sklearn compatibility, shapes, variants, scores, errors."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

import aelab
from aelab.exceptions import AelabError, ConfigError, DataError, NotFittedError

FAST = dict(epochs=3, random_state=0)


def make(cls, **kw):
    if cls is aelab.PCA:
        return aelab.PCA(n_components=kw.pop("latent_dim", 2), random_state=0)
    return cls(**{**FAST, **kw})


ALL = [aelab.Autoencoder, aelab.VAE, aelab.PCA]


@pytest.mark.parametrize("cls", ALL)
def test_init_stores_params_and_clone_roundtrips(cls):
    est = make(cls, latent_dim=3)
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params and twin is not est
    twin.set_params(random_state=7)
    assert twin.random_state == 7 and est.random_state == 0
    assert not [k for k in vars(est) if k.endswith("_")]  # nothing learned at construction


def test_import_aelab_does_not_import_sklearn_scipy_or_pandas():
    # The estimators implement scikit-learn's protocol themselves: importing scikit-learn
    # 1.9 would add ~1.4 s and ~170 MB (scipy.stats, pandas) to every CLI call and
    # streamed run.
    import subprocess
    import sys

    code = ("import sys, aelab, aelab.cli, aelab.io, aelab.latent; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sklearn_protocol_without_sklearn_base(blobs):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils import get_tags
    from sklearn.utils.validation import check_is_fitted as sk_check_is_fitted

    ae = aelab.Autoencoder(latent_dim=2, hidden=(16,), epochs=2, random_state=0)
    assert repr(ae) == "Autoencoder(epochs=2, hidden=(16,), latent_dim=2, random_state=0)"
    assert repr(aelab.VAE()) == "VAE()"
    tags = get_tags(ae)
    assert tags.transformer_tags is not None and tags.target_tags.required is False
    with pytest.raises(ValueError, match="has no parameter 'latent_size'.*latent_dim"):
        ae.set_params(latent_size=3)
    with pytest.raises(Exception, match="not fitted"):
        sk_check_is_fitted(ae)

    # a Pipeline clones nothing but calls fit_transform / transform on every step
    pipe = make_pipeline(FunctionTransformer(lambda X: X * 2.0), ae).fit(blobs[0])
    sk_check_is_fitted(ae)
    Z = pipe.transform(blobs[0][:7])
    np.testing.assert_allclose(Z, ae.transform(blobs[0][:7] * 2.0))
    assert ae.fit_transform(blobs[0]).shape == (len(blobs[0]), 2)
    pipe.set_params(autoencoder__epochs=1)
    assert ae.epochs == 1


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("method", ["transform", "reconstruct", "decision_function", "predict", "feature_errors"])
def test_not_fitted_error_is_value_and_attribute_error(cls, method, blobs):
    est = make(cls)
    with pytest.raises(NotFittedError) as info:
        getattr(est, method)(blobs[0])
    assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    assert isinstance(info.value, AelabError)
    assert "not fitted" in str(info.value) and "fit" in str(info.value)


@pytest.mark.parametrize("cls", ALL)
def test_fit_returns_self_and_shapes(cls, blobs):
    X, X_out = blobs
    est = make(cls, latent_dim=3)
    assert est.fit(X) is est
    assert est.transform(X).shape == (len(X), 3)
    assert est.reconstruct(X).shape == X.shape
    assert est.inverse_transform(est.transform(X[:5])).shape == (5, 8)
    assert est.decision_function(X).shape == (len(X),)
    assert est.decision_scores_.shape == (len(X),)
    assert est.feature_errors(X).shape == X.shape
    np.testing.assert_allclose(est.feature_errors(X).mean(1), est.decision_function(X, score="mse"), rtol=1e-4)
    assert est.sample(4, random_state=0).shape == (4, 8)
    assert est.n_features_in_ == 8
    # the threshold from the default contamination 0.1 flags about 10% of the training data
    assert 0.05 <= est.predict(X).mean() <= 0.15
    assert set(np.unique(est.predict(X_out))) <= {0, 1}


@pytest.mark.parametrize("cls", ALL)
def test_anomalies_score_higher(cls, blobs):
    from aelab.metrics import roc_auc

    X, X_out = blobs
    y = np.r_[np.zeros(len(X)), np.ones(len(X_out))]
    # the plain objective (trim=0): most anomalies lie above the 90th percentile of the normal scores
    est = make(cls, latent_dim=3, **({} if cls is aelab.PCA else {"epochs": 100, "trim": 0.0}))
    est.fit(X)
    s_in, s_out = est.decision_function(X), est.decision_function(X_out)
    assert np.median(s_out) > np.quantile(s_in, 0.9)
    if cls is not aelab.PCA:
        # the default trimmed objective ranks them too (its 10% worst-fitted training rows score high
        # by design, so the 90th percentile is not the right yardstick there)
        est = make(cls, latent_dim=3, epochs=100).fit(X)
        assert roc_auc(y, np.r_[est.decision_function(X), est.decision_function(X_out)]) > 0.75


def test_images_any_size_and_layout():
    rng = np.random.default_rng(0)
    for shape in [(30, 40, 22), (30, 1, 28, 28), (30, 3, 20, 20), (30, 20, 20, 3)]:
        X = rng.uniform(0, 255, size=shape).astype(np.uint8)
        est = aelab.Autoencoder(arch="conv", latent_dim=4, channels=(4, 8), **FAST).fit(X)
        assert est.model_cfg_.arch == "conv"
        assert est.reconstruct(X).shape == shape
        assert est.sample(2).shape == (2, *shape[1:])
        # outputs come back in the user's units (0..255), not the scaled [0, 1]
        assert est.reconstruct(X).max() > 2
    est = aelab.Autoencoder(arch="dense", latent_dim=4, **FAST).fit(X)
    assert est.model_cfg_.input_shape == (20 * 20 * 3,) and est.reconstruct(X).shape == X.shape


def test_scores_are_deterministic_and_vae_scores(blobs):
    X, _ = blobs
    vae = aelab.VAE(latent_dim=2, **FAST).fit(X)
    for score in ["mse", "mae", "mu_norm", "kl", "elbo"]:
        a, b = vae.decision_function(X, score=score), vae.decision_function(X, score=score)
        np.testing.assert_array_equal(a, b)
    mu = vae.transform(X)
    np.testing.assert_allclose(vae.decision_function(X, score="mu_norm"), np.linalg.norm(mu, axis=1), rtol=1e-5)
    with torch.no_grad():
        x = torch.from_numpy(vae.fitted_.to_net(X))
        m, logvar = vae.model_.encode(x)
    kl = 0.5 * (m.square() + logvar.exp() - 1 - logvar).sum(1).numpy()
    np.testing.assert_allclose(vae.decision_function(X, score="kl"), kl, rtol=1e-5)
    # elbo = 0.5 * squared-error sum (Gaussian decoder on standardised data) + KL, at z = mu
    rec = 0.5 * vae.decision_function(X, score="mse") * X.shape[1]
    np.testing.assert_allclose(vae.decision_function(X, score="elbo"), rec + kl, rtol=1e-4)


def test_latent_scores_need_a_vae(blobs):
    ae = aelab.Autoencoder(**FAST).fit(blobs[0])
    with pytest.raises(ConfigError, match="need a VAE"):
        ae.decision_function(blobs[0], score="kl")
    with pytest.raises(ConfigError, match="expected one of"):
        aelab.Autoencoder(anomaly_score="nope").fit(blobs[0])


def test_vae_logvar_is_clamped_and_beta_changes_training(blobs):
    X, _ = blobs
    from aelab.models.autoencoder import LOGVAR_MAX, LOGVAR_MIN

    vae = aelab.VAE(latent_dim=2, **FAST).fit(X)
    with torch.no_grad():
        _, logvar = vae.model_.encode(torch.full((3, 8), 1e6))
    assert logvar.min() >= LOGVAR_MIN and logvar.max() <= LOGVAR_MAX
    kl1 = aelab.VAE(latent_dim=2, beta=1.0, epochs=20, random_state=0).fit(X).decision_function(X, score="kl")
    kl8 = aelab.VAE(latent_dim=2, beta=8.0, epochs=20, random_state=0).fit(X).decision_function(X, score="kl")
    assert kl8.mean() < kl1.mean()  # a heavier KL weight pulls q(z|x) towards the prior


def test_linear_autoencoder_has_no_nonlinearity():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 6)).astype(np.float32)
    est = aelab.Autoencoder(linear=True, latent_dim=2, **FAST).fit(X)
    kinds = {type(m).__name__ for m in est.model_.modules()}
    assert kinds <= {"AutoencoderNet", "Sequential", "Linear", "Flatten", "Identity"}
    # linearity: f(a x + b y) - f(0) = a (f(x) - f(0)) + b (f(y) - f(0)) in scaled units
    with torch.no_grad():
        f = lambda t: est.model_(t).x_hat  # noqa: E731
        x, y, zero = torch.randn(1, 6), torch.randn(1, 6), torch.zeros(1, 6)
        lhs = f(2 * x + 3 * y) - f(zero)
        rhs = 2 * (f(x) - f(zero)) + 3 * (f(y) - f(zero))
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-4)


def test_sparsity_shrinks_codes(blobs):
    X, _ = blobs
    plain = aelab.Autoencoder(latent_dim=6, epochs=30, random_state=0).fit(X)
    sparse = aelab.Autoencoder(latent_dim=6, sparsity=0.1, epochs=30, random_state=0).fit(X)
    assert np.abs(sparse.transform(X)).mean() < 0.5 * np.abs(plain.transform(X)).mean()


def test_denoising_noise_only_in_training(blobs):
    X, _ = blobs
    dae = aelab.Autoencoder(latent_dim=3, noise=0.5, **FAST).fit(X)
    plain = aelab.Autoencoder(latent_dim=3, **FAST).fit(X)
    # same seed, only the corruption differs: the trained weights differ ...
    assert not np.allclose(dae.transform(X), plain.transform(X))
    # ... and scoring does not corrupt (repeatable, equal to the clean reconstruction error)
    np.testing.assert_array_equal(dae.decision_function(X), dae.decision_function(X))
    rec = dae.reconstruct(X)
    manual = (((rec - X) / dae.scaler_.scale) ** 2).mean(1)
    np.testing.assert_allclose(dae.decision_function(X, score="mse"), manual, rtol=1e-3)


def test_denoising_autoencoder_removes_noise(digits):
    X = digits[0][:1500]
    rng = np.random.default_rng(0)
    noisy = np.clip(X / 255.0 + rng.normal(0, 0.3, X.shape), 0, 1).astype(np.float32) * 255
    kw = dict(arch="dense", latent_dim=32, epochs=15, batch_size=128, random_state=0)
    plain = aelab.Autoencoder(**kw).fit(X)
    dae = aelab.Autoencoder(noise=0.3, **kw).fit(X)
    err = lambda est: np.mean((est.reconstruct(noisy) - X) ** 2)  # noqa: E731
    assert err(dae) < err(plain)


def test_training_is_deterministic_for_a_seed(blobs):
    X, _ = blobs
    a = aelab.Autoencoder(noise=0.1, **FAST).fit(X).transform(X)
    b = aelab.Autoencoder(noise=0.1, **FAST).fit(X).transform(X)
    c = aelab.Autoencoder(noise=0.1, epochs=3, random_state=1).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_does_not_touch_global_rng(blobs):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    aelab.Autoencoder(**FAST).fit(blobs[0])
    torch.testing.assert_close(torch.rand(3), expected)


def test_history_validation_and_early_stopping(blobs):
    X, _ = blobs
    est = aelab.Autoencoder(epochs=300, patience=3, lr=3e-2, random_state=0).fit(X)
    h = est.history_
    assert len(h["loss"]) == len(h["val_loss"]) < 300
    # the restored weights are the best epoch's: the validation loss recomputed now equals its minimum
    assert min(h["val_loss"]) <= h["val_loss"][-1]
    no_val = aelab.Autoencoder(epochs=4, validation_fraction=0, early_stopping=False, random_state=0).fit(X)
    assert "val_loss" not in no_val.history_ and len(no_val.history_["loss"]) == 4


def test_auto_epochs_scale_with_data(blobs):
    X, _ = blobs
    est = aelab.Autoencoder(random_state=0, early_stopping=False, patience=1)
    est.fit(X[:64])
    assert est.n_epochs_config_ == 200  # 1 step per epoch: capped at 200 epochs
    assert len(est.history_["loss"]) == 200


def test_verbose_shows_progress(blobs, capsys):
    aelab.Autoencoder(epochs=2, verbose=True, random_state=0).fit(blobs[0])
    assert "training" in capsys.readouterr().err


def test_nan_loss_raises_a_clear_error():
    X = np.full((64, 4), 1e19, np.float32)
    X[::2] *= -1
    with pytest.raises(aelab.exceptions.TrainingError, match="learning rate"):
        aelab.Autoencoder(scaler="none", epochs=2, random_state=0).fit(X)


def test_scaler_auto_and_constant_columns():
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(5, 3, size=(200, 3)), np.full((200, 1), 7.0)].astype(np.float32)
    est = aelab.Autoencoder(**FAST).fit(X)
    assert est.scaler_.kind == "standard" and est.model_cfg_.output == "identity"
    assert np.isfinite(est.decision_function(X)).all()
    assert np.isfinite(est.reconstruct(X)).all()
    U = rng.uniform(size=(200, 4)).astype(np.float32)
    est = aelab.Autoencoder(**FAST).fit(U)
    assert est.scaler_.kind == "minmax" and est.model_cfg_.output == "sigmoid"


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN or infinite"),
    (np.array([[1.0, np.inf], [2.0, 3.0]]), "NaN or infinite"),
    (np.arange(5.0), "1 dimension"),
    (np.zeros((0, 3)), "0 sample"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    (np.zeros((2, 2, 2, 2, 2)), "5 dimension"),
])
def test_bad_input_errors(bad, match):
    with pytest.raises(DataError, match=match) as info:
        aelab.Autoencoder(**FAST).fit(bad)
    assert isinstance(info.value, ValueError)


def test_feature_and_shape_mismatch_at_transform(blobs):
    X, _ = blobs
    est = aelab.Autoencoder(**FAST).fit(X)
    with pytest.raises(DataError, match="has 5 features, but Autoencoder is expecting 8 features"):
        est.decision_function(X[:, :5])
    img = aelab.Autoencoder(channels=(4,), **FAST).fit(np.zeros((8, 12, 12), np.float32) + np.eye(12))
    with pytest.raises(DataError, match=r"per-sample shape \(10, 10\).*\(12, 12\)"):
        img.transform(np.zeros((2, 10, 10)))


@pytest.mark.parametrize("kw, match", [
    (dict(arch="rnn"), "arch"), (dict(noise=-1), "noise"), (dict(noise_type="salt"), "noise_type"),
    (dict(scaler="robust"), "scaler"), (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(batch_size=0), "batch_size"), (dict(contamination=0.9), "contamination"),
    (dict(latent_dim=0), "latent_dim"), (dict(backbone="alexnet", arch="conv"), "backbone"),
    (dict(trim=1.0), "trim"), (dict(trim=-0.1), "trim"),
])
def test_bad_parameters(kw, match):
    X = np.zeros((10, 6, 6), np.float32) + np.eye(6)
    with pytest.raises(ConfigError, match=match):
        aelab.Autoencoder(**{**FAST, **kw}).fit(X)


def test_cuda_request_without_cuda_is_clear(blobs):
    if torch.cuda.is_available():
        est = aelab.Autoencoder(device="cuda", **FAST).fit(blobs[0])
        assert est.device_.type == "cuda"
    else:
        with pytest.raises(ConfigError, match="CUDA is not available"):
            aelab.Autoencoder(device="cuda", **FAST).fit(blobs[0])


def test_pca_matches_sklearn(blobs):
    from sklearn.decomposition import PCA as SkPCA

    X, _ = blobs
    ours = aelab.PCA(n_components=3, scaler="none").fit(X)
    sk = SkPCA(n_components=3).fit(X)
    np.testing.assert_allclose(ours.explained_variance_, sk.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(ours.reconstruct(X), sk.inverse_transform(sk.transform(X)), atol=1e-4)
    with pytest.raises(ConfigError, match="exceeds the number of features"):
        aelab.PCA(n_components=9).fit(X)


@pytest.mark.slow
def test_linear_autoencoder_matches_pca(digits):
    """Baldi & Hornik: a linear AE with k units spans the top-k principal subspace."""
    from scipy.linalg import subspace_angles

    X = digits[0]
    k = 16
    pca = aelab.PCA(n_components=k).fit(X)
    # the equivalence holds for the plain mean-squared objective, hence trim=0
    lae = aelab.Autoencoder(latent_dim=k, hidden=(), linear=True, arch="dense", epochs=200, lr=1e-3, batch_size=128,
                            trim=0.0, validation_fraction=0, early_stopping=False, random_state=0).fit(X)
    e_pca, e_lae = pca.decision_function(X, score="mse").mean(), lae.decision_function(X, score="mse").mean()
    assert e_pca <= e_lae <= 1.02 * e_pca
    # largest principal angle between the subspaces the centred reconstructions span
    R_pca = (pca.reconstruct(X) - pca.reconstruct(X).mean(0)).reshape(len(X), -1)
    R_lae = (lae.reconstruct(X) - lae.reconstruct(X).mean(0)).reshape(len(X), -1)
    U_pca = np.linalg.svd(R_pca, full_matrices=False)[2][:k].T
    U_lae = np.linalg.svd(R_lae, full_matrices=False)[2][:k].T
    assert np.degrees(subspace_angles(U_pca, U_lae)).max() < 5.0


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("score", ["auto", "mse", "latent", "mse+latent", "relative+latent"])
def test_training_scores_equal_decision_function(cls, score, blobs):
    X, _ = blobs
    kw = {"anomaly_score": score} if cls is not aelab.PCA else {}
    est = (aelab.PCA(n_components=3, anomaly_score=score) if cls is aelab.PCA else cls(epochs=2, random_state=0, **kw)).fit(X)
    if est.score_ in ("knn", "mse+knn", "mse+latent+knn", "knn+isolation"):
        # a training row is not its own neighbour in its training score (PyOD's convention): the
        # scores of the same rows as new data, each in a reference set it is not part of, differ
        assert est.score_ == "knn" and score == "auto"
        assert est.decision_scores_.mean() > est.decision_function(X).mean()
        return
    np.testing.assert_allclose(est.decision_scores_, est.decision_function(X), rtol=1e-9, atol=1e-12)
