import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import jensenshannon

from aelab.divergences import elbo, entropy, gaussian_kl, js_divergence, kl_divergence, symmetric_kl
from aelab.exceptions import ConfigError, DataError

LN2 = math.log(2)


def _random_pairs(rng, n=200, k=6, sparse=True):
    p, q = rng.random((n, k)), rng.random((n, k))
    if sparse:  # put exact zeros in, some shared, some not
        p[rng.random((n, k)) < 0.3] = 0
        q[rng.random((n, k)) < 0.3] = 0
        p[:, 0] += 0.01  # no all-zero vector
        q[:, 1] += 0.01
    return p, q


# ---------------------------------------------------------------- hand-made values


def test_entropy_known_values():
    assert entropy([1, 1, 1, 1], base=2) == pytest.approx(2.0)
    assert entropy([0.25] * 4) == pytest.approx(math.log(4))
    assert entropy([1, 0, 0]) == 0.0  # 0 log 0 = 0
    assert entropy([3, 1], base=2) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_kl_known_values_and_asymmetry():
    p, q = [0.9, 0.1], [0.1, 0.9]
    assert kl_divergence(p, q) == pytest.approx(0.8 * math.log(9))
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence([0.5, 0.5], [0.9, 0.1]) != pytest.approx(kl_divergence([0.9, 0.1], [0.5, 0.5]))
    assert kl_divergence([1, 0], [0.5, 0.5], base=2) == pytest.approx(1.0)


def test_kl_infinite_when_q_zero_where_p_positive():
    assert kl_divergence([0.5, 0.5], [1, 0]) == math.inf
    assert kl_divergence([1, 0], [0.5, 0.5]) == pytest.approx(LN2)  # the other direction is finite


def test_unnormalised_inputs_are_normalised():
    assert kl_divergence([9, 1], [2, 18]) == pytest.approx(kl_divergence([0.9, 0.1], [0.1, 0.9]))
    assert js_divergence([10, 0], [0, 3]) == pytest.approx(LN2)
    assert entropy([7, 7]) == pytest.approx(LN2)


def test_js_worked_example_and_disjoint_supports():
    # The example of docs/theory.md: p = (0.9, 0.1), q = (0.1, 0.9), m = (0.5, 0.5).
    p, q = [0.9, 0.1], [0.1, 0.9]
    expected = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)
    assert js_divergence(p, q) == pytest.approx(expected)
    assert js_divergence(p, q, base=2) == pytest.approx(expected / LN2)
    assert symmetric_kl(p, q) == pytest.approx(0.8 * math.log(9))  # 1.758 nats > ln 2
    assert symmetric_kl(p, q) > LN2 > js_divergence(p, q)
    # Disjoint supports: JS reaches its bound, symmetric KL is infinite.
    assert js_divergence([1, 1, 0, 0], [0, 0, 1, 1]) == pytest.approx(LN2)
    assert js_divergence([1, 1, 0, 0], [0, 0, 1, 1], base=2) == pytest.approx(1.0)
    assert symmetric_kl([1, 1, 0, 0], [0, 0, 1, 1]) == math.inf


def test_js_is_not_symmetric_kl():
    p, q = [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]
    assert js_divergence(p, q) != pytest.approx(symmetric_kl(p, q), rel=0.05)
    assert symmetric_kl(p, q) == pytest.approx((kl_divergence(p, q) + kl_divergence(q, p)) / 2)


# ---------------------------------------------------------------- against scipy


@pytest.mark.parametrize("base", [None, 2, 10])
def test_against_scipy_batched(base):
    rng = np.random.default_rng(0)
    p, q = _random_pairs(rng)
    np.testing.assert_allclose(entropy(p, base=base), stats.entropy(p, base=base, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(kl_divergence(p, q, base=base), stats.entropy(p, q, base=base, axis=-1), rtol=1e-12)
    js_ref = jensenshannon(p, q, base=base, axis=-1) ** 2  # scipy returns sqrt(JS), natural log by default
    np.testing.assert_allclose(js_divergence(p, q, base=base), js_ref, rtol=1e-9, atol=1e-15)
    skl_ref = (stats.entropy(p, q, base=base, axis=-1) + stats.entropy(q, p, base=base, axis=-1)) / 2
    np.testing.assert_array_equal(np.isinf(symmetric_kl(p, q, base=base)), np.isinf(skl_ref))
    finite = np.isfinite(skl_ref)
    assert finite.any() and (~finite).any()
    np.testing.assert_allclose(symmetric_kl(p, q, base=base)[finite], skl_ref[finite], rtol=1e-12)


def test_broadcasting_along_last_axis():
    rng = np.random.default_rng(1)
    P = rng.random((5, 4))
    q = rng.random(4)
    out = kl_divergence(P, q)
    assert out.shape == (5,)
    np.testing.assert_allclose(out, [kl_divergence(row, q) for row in P])
    assert isinstance(kl_divergence(P[0], q), float)
    assert js_divergence(P[:, None, :], P[None, :, :]).shape == (5, 5)


def test_torch_tensor_input_is_accepted():
    assert entropy(torch.tensor([1.0, 1.0])) == pytest.approx(LN2)


# ---------------------------------------------------------------- properties


def test_js_bounded_symmetric_and_sqrt_is_metric():
    rng = np.random.default_rng(2)
    n, k = 3000, 5
    a, b, c = (rng.dirichlet(np.full(k, 0.3), size=n) for _ in range(3))
    a[: n // 3, :2] = 0  # some exact zeros, incl. disjoint-ish supports
    b[: n // 3, 2:] = 0
    d_ab, d_bc, d_ac = (np.sqrt(js_divergence(x, y)) for x, y in ((a, b), (b, c), (a, c)))
    assert np.all(d_ac <= d_ab + d_bc + 1e-12)
    js = js_divergence(a, b)
    assert np.all((js >= 0) & (js <= LN2 + 1e-15))
    np.testing.assert_allclose(js, js_divergence(b, a), rtol=1e-12, atol=1e-15)
    assert np.all(js_divergence(a, a) == 0)


def test_sqrt_symmetric_kl_violates_triangle_inequality():
    # Why the distinction matters: sqrt of the symmetric KL is not a metric.
    a, b, c = [0.999, 0.001], [0.97, 0.03], [0.1, 0.9]
    d = lambda x, y: math.sqrt(symmetric_kl(x, y))  # noqa: E731
    assert d(a, c) > d(a, b) + d(b, c) + 0.2  # 2.02 > 1.79
    dj = lambda x, y: math.sqrt(js_divergence(x, y))  # noqa: E731
    assert dj(a, c) <= dj(a, b) + dj(b, c)


def test_entropy_and_kl_properties():
    rng = np.random.default_rng(3)
    p, q = _random_pairs(rng, sparse=False)
    h = entropy(p)
    assert np.all((h >= 0) & (h <= math.log(p.shape[1]) + 1e-12))
    assert np.all(kl_divergence(p, q) >= 0)
    # Cross-entropy decomposition: H(p, q) = H(p) + KL(p || q).
    pn, qn = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    np.testing.assert_allclose(-(pn * np.log(qn)).sum(1), h + kl_divergence(p, q), rtol=1e-12)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "p, q, match",
    [
        ([0.5, -0.1, 0.6], [1, 1, 1], "negative"),
        ([0, 0], [1, 1], "all zero"),
        ([1, 2, 3], [1, 2], "same number of outcomes"),
        ([[1, 2], [3, 4], [5, 6]], [[1, 2], [3, 4]], "do not broadcast"),
        ([1, np.nan], [1, 1], "NaN"),
        ([], [], "at least one entry"),
        (1.0, 1.0, "at least one entry"),
    ],
)
def test_invalid_distributions_raise_data_error(p, q, match):
    with pytest.raises(DataError, match=match):
        kl_divergence(p, q)


@pytest.mark.parametrize("base", [1, 0, -2, "2", np.inf])
def test_invalid_base_raises_config_error(base):
    with pytest.raises(ConfigError, match="base"):
        entropy([1, 1], base=base)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        js_divergence([1, -1], [1, 1])


# ---------------------------------------------------------------- Gaussian KL and ELBO


def test_gaussian_kl_known_values():
    assert gaussian_kl(np.zeros(3), np.zeros(3)) == 0.0
    assert gaussian_kl([1.0, 0.0], [0.0, 0.0]) == pytest.approx(0.5)
    # one dimension, sigma^2 = e: 0.5 * (e - 1 - 1)
    assert gaussian_kl([0.0], [1.0]) == pytest.approx(0.5 * (math.e - 2))
    out = gaussian_kl(np.zeros((4, 2)), np.zeros((4, 2)))
    assert out.shape == (4,)


def test_gaussian_kl_matches_monte_carlo():
    rng = np.random.default_rng(4)
    mu = np.array([0.5, -1.0, 2.0])
    logvar = np.array([0.3, -1.2, 0.8])
    sd = np.exp(0.5 * logvar)
    n = 200_000
    z = mu + sd * rng.standard_normal((n, 3))
    log_ratio = (stats.norm.logpdf(z, mu, sd) - stats.norm.logpdf(z)).sum(axis=1)
    estimate = log_ratio.mean()
    # The MC mean has standard error std/sqrt(n) (CLT); 5 of them: false-failure rate < 1e-6.
    tol = 5 * log_ratio.std(ddof=1) / math.sqrt(n)
    kl = gaussian_kl(mu, logvar)
    assert abs(kl - estimate) < tol
    assert tol < 0.015 * kl  # the check is sharp: about 1% of KL = 3.11


def test_gaussian_kl_torch_same_values_and_differentiable():
    rng = np.random.default_rng(5)
    mu_np, lv_np = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    mu = torch.tensor(mu_np, requires_grad=True)
    lv = torch.tensor(lv_np, requires_grad=True)
    out = gaussian_kl(mu, lv)
    assert isinstance(out, torch.Tensor) and out.shape == (6,) and out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), gaussian_kl(mu_np, lv_np), rtol=1e-12)
    out.sum().backward()
    np.testing.assert_allclose(mu.grad.numpy(), mu_np, rtol=1e-12)  # d/dmu = mu
    np.testing.assert_allclose(lv.grad.numpy(), 0.5 * (np.exp(lv_np) - 1), rtol=1e-12)
    assert torch.autograd.gradcheck(gaussian_kl, (mu.detach().requires_grad_(), lv.detach().requires_grad_()))


def test_gaussian_kl_mixed_numpy_torch_and_float32():
    mu = torch.zeros(2, 3, dtype=torch.float32)
    out = gaussian_kl(mu, np.ones((2, 3)))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), 1.5 * (math.e - 2), rtol=1e-6)


@pytest.mark.parametrize("mu, logvar", [(np.zeros((3, 2)), np.zeros((4, 2))), (np.float64(0), np.float64(0))])
def test_gaussian_kl_bad_shapes(mu, logvar):
    with pytest.raises(DataError):
        gaussian_kl(mu, logvar)
    with pytest.raises(DataError):
        gaussian_kl(torch.as_tensor(mu), torch.as_tensor(logvar))


def test_elbo_numpy_and_torch():
    ll = np.array([-10.0, -12.0])
    mu, lv = np.array([[1.0, 0.0], [0.0, 0.0]]), np.zeros((2, 2))
    np.testing.assert_allclose(elbo(ll, mu, lv), [-10.5, -12.0])
    np.testing.assert_allclose(elbo(ll, mu, lv, beta=4.0), [-12.0, -12.0])
    mu_t = torch.tensor(mu, requires_grad=True)
    out = elbo(torch.tensor(ll), mu_t, torch.tensor(lv))
    out.sum().backward()
    np.testing.assert_allclose(mu_t.grad.numpy(), -mu)
    with pytest.raises(DataError, match="one log-likelihood per sample"):
        elbo(ll[:, None], mu, lv)
    with pytest.raises(ConfigError, match="beta"):
        elbo(ll, mu, lv, beta=-1)
