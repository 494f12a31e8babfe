"""Model kinds are objects (aelab.kinds): each estimator names its kind, a fitted network's
configuration reads back to the same kind, and each kind answers what differs."""

import numpy as np
import pytest
import torch

import aelab
from aelab import losses
from aelab.config import ModelConfig
from aelab.exceptions import ConfigError
from aelab.kinds import AUTOENCODER, PRINCIPAL, VARIATIONAL, kind_of
from aelab.models import build_model


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(120, 5)).astype("float32")


@pytest.mark.parametrize("cls, kind", [(aelab.Autoencoder, AUTOENCODER), (aelab.VAE, VARIATIONAL),
                                       (aelab.PCA, PRINCIPAL)])
def test_each_estimator_names_its_kind_and_the_fitted_network_reads_back_to_it(cls, kind, X):
    est = cls(random_state=0) if cls is aelab.PCA else cls(latent_dim=2, epochs=1, random_state=0)
    assert cls._kind is kind
    assert kind_of(est.fit(X).model_cfg_) is kind
    # the score the kind offers: the ELBO only for the variational kind
    if kind.variational:
        assert np.isfinite(est.decision_function(X, score="elbo")).all()
        assert est.score(X) == pytest.approx(-np.mean(est.decision_function(X, score="elbo")))
    else:
        with pytest.raises(ConfigError, match="need a VAE"):
            est.decision_function(X, score="elbo")
        assert est.score(X) == pytest.approx(-np.mean(est.decision_function(X, score="mse")))


def test_reconstruction_term_and_gradient_clip_are_the_kinds():
    assert VARIATIONAL.recon_kind("sigmoid") == "bce" and VARIATIONAL.recon_kind("identity") == "mse"
    assert AUTOENCODER.recon_kind("sigmoid") == "mse" and PRINCIPAL.recon_kind("identity") == "mse"
    assert VARIATIONAL.grad_clip == 10.0 and AUTOENCODER.grad_clip is None


def test_autoencoder_training_loss_is_the_trimmed_mean_of_its_evaluation_loss():
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_shape=(6,), latent_dim=2, hidden=(8,)))
    xb = torch.randn(40, 6)
    train_loss, eval_loss = AUTOENCODER.losses(model, None, "mse", noise=0.0, noise_type="gaussian",
                                               sparsity=0.0, trim=0.1)
    # the fused trimmed MSE of training equals the trimmed mean of the per-sample evaluation loss
    torch.testing.assert_close(train_loss(xb), losses.trimmed_mean(eval_loss(xb), 0.1))
    # with a sparsity term the general path adds it per sample
    t2, e2 = AUTOENCODER.losses(model, None, "mse", noise=0.0, noise_type="gaussian", sparsity=0.5, trim=0.0)
    z = model(xb, sample=False).z
    torch.testing.assert_close(e2(xb), eval_loss(xb) + 0.5 * losses.sparsity(z))
    torch.testing.assert_close(t2(xb), e2(xb).mean())


def test_variational_training_loss_samples_the_code_and_evaluation_does_not():
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_shape=(6,), latent_dim=2, hidden=(8,), variational=True))
    xb = torch.randn(32, 6)
    train_loss, eval_loss = VARIATIONAL.losses(model, None, "mse", noise=0.0, noise_type="gaussian",
                                               sparsity=0.0, trim=0.0, beta=0.5)
    with torch.no_grad():
        assert float(train_loss(xb)) != float(train_loss(xb))  # z drawn afresh each call
    torch.testing.assert_close(eval_loss(xb), eval_loss(xb))
    out = model(xb, sample=False)
    torch.testing.assert_close(eval_loss(xb), losses.elbo(out.x_hat, xb, out.mu, out.logvar, beta=0.5, kind="mse"))


def test_sample_draws_codes_as_the_kind_says(X):
    vae = aelab.VAE(latent_dim=2, epochs=1, random_state=0).fit(X)
    ae = aelab.Autoencoder(latent_dim=2, epochs=1, random_state=0).fit(X)
    np.testing.assert_array_equal(VARIATIONAL.draw_codes(vae.fitted_, np.random.default_rng(3), 4),
                                  np.random.default_rng(3).standard_normal((4, 2)))  # the prior N(0, I)
    Z = AUTOENCODER.draw_codes(ae.fitted_, np.random.default_rng(3), 20000)  # the training codes' Gaussian
    np.testing.assert_allclose(Z.mean(axis=0), ae.latent_mean_, atol=0.05 * np.sqrt(np.diag(ae.latent_cov_)).max())
    np.testing.assert_allclose(np.cov(Z.T), ae.latent_cov_, rtol=0.1, atol=1e-3)
    np.testing.assert_array_equal(vae.sample(4, random_state=3),
                                  vae.inverse_transform(np.random.default_rng(3).standard_normal((4, 2))
                                                        .astype(np.float32)))


def test_pca_kind_is_affine_and_gives_its_own_code_gaussian(X):
    pca = aelab.PCA(n_components=2).fit(X)
    assert PRINCIPAL.affine(pca.model_cfg_) and PRINCIPAL.closed_form
    mean, cov = PRINCIPAL.latent_gaussian(pca.model_)()
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_allclose(np.diag(cov), pca.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(pca.latent_cov_, cov, rtol=1e-6)
    assert AUTOENCODER.latent_gaussian(pca.model_) is None
    assert AUTOENCODER.affine(ModelConfig(input_shape=(5,), latent_dim=2, linear=True, output="identity"))
    assert not AUTOENCODER.affine(ModelConfig(input_shape=(5,), latent_dim=2, output="identity"))
