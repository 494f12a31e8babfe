"""Losses as pure functions with per-sample reduction, reused by training and scoring.

Every function returns one value per sample (shape ``(n,)``); callers take the
mean for a batch loss. References: Kingma & Welling (2014), Auto-Encoding
Variational Bayes, Appendix B, for the closed-form Gaussian KL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["reconstruction", "gaussian_kl", "sparsity", "elbo", "trimmed_mean"]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def reconstruction(x_hat: torch.Tensor, x: torch.Tensor, kind: str = "mse", reduction: str = "mean") -> torch.Tensor:
    """Per-sample reconstruction error, averaged (``reduction="mean"``) or summed over features.

    ``kind``: "mse" (squared error), "mae" (absolute error), "bce" (binary cross-entropy;
    ``x_hat`` are probabilities in [0, 1], clamped for numerical safety).
    """
    if kind == "mse":
        err = (x_hat - x).square()
    elif kind == "mae":
        err = (x_hat - x).abs()
    elif kind == "bce":
        err = F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x, reduction="none")
    else:
        raise ValueError(f"unknown reconstruction kind {kind!r}; expected 'mse', 'mae' or 'bce'")
    err = _flat(err)
    return err.mean(dim=1) if reduction == "mean" else err.sum(dim=1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag exp(logvar)) || N(0, I) ) per sample, summed over latent units."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)


def sparsity(z: torch.Tensor) -> torch.Tensor:
    """L1 norm of the code per sample, sum_j |z_j| (the Laplace-prior penalty)."""
    return z.abs().sum(dim=1)


def elbo(x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
         beta: float = 1.0, kind: str = "bce") -> torch.Tensor:
    """Negative evidence lower bound per sample: reconstruction NLL (summed) + beta * KL.

    With ``kind="bce"`` the decoder is Bernoulli; with ``kind="mse"`` it is Gaussian with
    unit variance, whose NLL is 0.5 * squared error up to a constant.
    """
    rec = reconstruction(x_hat, x, kind, reduction="sum")
    if kind == "mse":
        rec = 0.5 * rec
    return rec + beta * gaussian_kl(mu, logvar)


def trimmed_mean(per_sample: torch.Tensor, trim: float) -> torch.Tensor:
    """Mean of ``per_sample`` after dropping the ``trim`` share of largest values.

    ``round((1 - trim) * n)`` values are kept (at least one). Used as a robust training
    loss: samples the model reconstructs worst, likely anomalies in contaminated
    training data, give no gradient.
    """
    n = per_sample.shape[0]
    keep = max(1, int(round((1.0 - trim) * n)))
    if keep >= n:
        return per_sample.mean()
    return torch.topk(per_sample, keep, largest=False, sorted=False).values.mean()
