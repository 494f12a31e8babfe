"""Per-sample anomaly scores, computed batch by batch without gradients.

Every score is deterministic (the VAE is evaluated at z = mu) and follows the
convention HIGHER = MORE ANOMALOUS:

* ``mse`` / ``mae``: mean squared / absolute reconstruction error per sample, in the
  scaled units the network sees (so features of different units weigh alike);
* ``mu_norm`` (VAE): Euclidean norm |mu| of the posterior mean;
* ``kl`` (VAE): KL( q(z|x) || N(0, I) ), closed form;
* ``elbo`` (VAE): the negative ELBO with beta = 1 and the reconstruction term at z = mu.
"""

from __future__ import annotations

import torch

from . import losses
from .exceptions import ConfigError

RECONSTRUCTION_SCORES = ("mse", "mae")
LATENT_SCORES = ("mu_norm", "kl", "elbo")
SCORES = RECONSTRUCTION_SCORES + LATENT_SCORES


def check_score(score: str, variational: bool, owner: str) -> None:
    allowed = SCORES if variational else RECONSTRUCTION_SCORES
    if score not in allowed:
        extra = "" if variational or score not in LATENT_SCORES else " (latent scores need a VAE)"
        raise ConfigError(f"score={score!r} is not available for {owner}{extra}; expected one of {allowed}.")


def score_batch(model, x: torch.Tensor, score: str, recon_kind: str = "mse", out=None) -> torch.Tensor:
    """Scores of one batch ``x`` (already scaled, on the model's device).

    ``out``: the model's output for ``x`` when the caller has it already.
    """
    out = model(x, sample=False) if out is None else out
    if score in RECONSTRUCTION_SCORES:
        return losses.reconstruction(out.x_hat, x, score)
    if out.mu is None:
        raise ConfigError(f"score={score!r} needs a variational model.")
    if score == "mu_norm":
        return out.mu.norm(dim=1)
    if score == "kl":
        return losses.gaussian_kl(out.mu, out.logvar)
    return losses.elbo(out.x_hat, x, out.mu, out.logvar, beta=1.0, kind=recon_kind)


def feature_errors_batch(model, x: torch.Tensor) -> torch.Tensor:
    """Per-feature squared reconstruction error, same shape as ``x``."""
    return (model(x, sample=False).x_hat - x).square()
