"""Losses (per-sample reduction) and preprocessing: scalers and corruption."""

import numpy as np
import pytest
import torch

from aelab import divergences, losses
from aelab.exceptions import ConfigError
from aelab.preprocessing import RunningStats, Scaler, corrupt, resolve_scaler


def test_reconstruction_per_sample():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    x_hat = torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(losses.reconstruction(x_hat, x, "mse"), torch.tensor([0.125, 1.0]))
    torch.testing.assert_close(losses.reconstruction(x_hat, x, "mae", reduction="sum"), torch.tensor([0.5, 2.0]))
    bce = losses.reconstruction(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), "bce", reduction="sum")
    torch.testing.assert_close(bce, torch.tensor([2 * np.log(2.0)], dtype=torch.float32))
    # images are flattened per sample
    assert losses.reconstruction(torch.zeros(3, 1, 4, 4), torch.ones(3, 1, 4, 4)).shape == (3,)
    with pytest.raises(ValueError, match="unknown reconstruction"):
        losses.reconstruction(x_hat, x, "huber")


def test_gaussian_kl_matches_divergences_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) * 0.5
    kl = losses.gaussian_kl(mu, logvar)
    np.testing.assert_allclose(kl.numpy(), divergences.gaussian_kl(mu.numpy(), logvar.numpy()), rtol=1e-5)
    # Monte Carlo: E_q[log q(z) - log p(z)]
    n = 200_000
    std = (0.5 * logvar[0]).exp()
    z = mu[0] + std * torch.randn(n, 3, generator=g)
    log_q = torch.distributions.Normal(mu[0], std).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    diff = (log_q - log_p).double()
    assert abs(diff.mean().item() - kl[0].item()) < 5 * diff.std().item() / np.sqrt(n)


def test_sparsity_and_elbo():
    z = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    torch.testing.assert_close(losses.sparsity(z), torch.tensor([3.0, 0.5]))
    x = torch.tensor([[1.0, 0.0]])
    x_hat = torch.tensor([[0.5, 0.5]])
    mu, logvar = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    e = losses.elbo(x_hat, x, mu, logvar, beta=2.0, kind="mse")
    torch.testing.assert_close(e, torch.tensor([0.5 * 0.5 + 2.0 * 0.5]))


def test_scaler_constant_columns_and_roundtrip():
    X = np.c_[np.arange(10.0), np.full(10, 3.0)]
    for kind in ["standard", "minmax"]:
        sc = Scaler(kind).fit(X)
        Xs = sc.transform(X)
        assert np.isfinite(Xs).all()
        np.testing.assert_allclose(sc.inverse_transform(Xs), X, rtol=1e-6, atol=1e-6)
    assert np.allclose(Scaler("minmax").fit(X).transform(X)[:, 0], np.linspace(0, 1, 10))


def test_running_stats_merge_chunks_stably():
    # a large offset: E[x^2] - E[x]^2 (the old merge) loses about 1% of the variance here
    X = np.random.default_rng(0).normal(1e7, 1.0, size=(5000, 4))
    one = Scaler("standard").fit(X)
    parts = RunningStats()
    for chunk in np.array_split(X, 7):
        parts.update(chunk)
    chunked = Scaler("standard").fit_stats(parts)
    np.testing.assert_allclose(chunked.offset, X.mean(0).astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(chunked.scale, X.std(0), rtol=1e-6)
    np.testing.assert_allclose(chunked.scale, one.scale, rtol=1e-6)
    naive = np.sqrt(np.square(X).mean(0) - X.mean(0) ** 2)
    assert np.abs(naive / X.std(0) - 1).max() > 1e-3  # the naive formula is visibly off


def test_resolve_scaler_rules():
    def stats(X):
        return RunningStats.of(np.asarray(X))

    assert resolve_scaler("auto", True, stats(np.zeros((5, 8, 8)))) == ("minmax", False)
    assert resolve_scaler("auto", False, stats(np.random.default_rng(0).uniform(size=(5, 3)))) == ("minmax", True)
    assert resolve_scaler("auto", False, stats([[5.0, -1.0], [2.0, 3.0]])) == ("standard", True)
    # uint8 tables are min-max scaled per column, as documented (the dtype is read before any cast)
    assert resolve_scaler("auto", False, stats(np.array([[5, 200], [2, 3]], np.uint8))) == ("minmax", True)
    assert resolve_scaler("standard", True, stats(np.zeros((5, 8, 8)))) == ("standard", False)
    with pytest.raises(ConfigError, match="scaler="):
        resolve_scaler("robust", False, stats(np.zeros((2, 2))))


def test_corruption_statistics():
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    noisy = corrupt(x, 0.3, "gaussian")
    assert abs((noisy - x).std().item() - 0.3) < 0.01 and abs((noisy - x).mean().item()) < 0.01
    masked = corrupt(x, 0.25, "mask")
    assert abs((masked == 0).float().mean().item() - 0.25) < 0.01
    assert set(masked.unique().tolist()) <= {0.0, 1.0}
    assert corrupt(x, 0.0, "gaussian") is x
    with pytest.raises(ConfigError, match="noise_type"):
        corrupt(x, 0.1, "salt")


def test_trimmed_mean_drops_the_largest_share():
    from aelab.losses import trimmed_mean

    v = torch.tensor([5.0, 1.0, 100.0, 2.0, 3.0, 4.0, 50.0, 6.0, 7.0, 8.0])
    assert trimmed_mean(v, 0.0).item() == pytest.approx(v.mean().item())
    assert trimmed_mean(v, 0.2).item() == pytest.approx(36 / 8)  # 100 and 50 left out
    assert trimmed_mean(v, 0.14).item() == pytest.approx((v.sum().item() - 100) / 9)  # round(8.6) = 9 kept
    assert trimmed_mean(v[:1], 0.5).item() == 5.0  # at least one value is kept
    # no gradient reaches the trimmed samples
    x = v.clone().requires_grad_(True)
    trimmed_mean(x, 0.2).backward()
    assert x.grad[2] == 0 and x.grad[6] == 0 and torch.allclose(x.grad[[0, 1, 3]], torch.full((3,), 1 / 8))
