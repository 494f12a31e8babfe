"""Model kinds as objects: what differs between the autoencoder, the VAE and PCA.

A caller asks the kind instead of testing a flag: the training and evaluation losses
(the ELBO and the sampled code of the VAE, the plain squared error of the autoencoder),
the reconstruction term, gradient clipping, the scores the kind offers, the score that
``Estimator.score`` negates, how new codes are drawn for ``sample``, whether the network is
affine (exact Shapley values, :mod:`aelab.shapley`), and PCA's own code Gaussian.
:func:`kind_of` reads the kind of a fitted network from its :class:`~aelab.config.ModelConfig`;
each estimator class names its kind.
"""

from __future__ import annotations

import numpy as np

from . import losses
from .preprocessing import corrupt
from .scoring import check_score

__all__ = ["ModelKind", "Variational", "Principal", "AUTOENCODER", "VARIATIONAL", "PRINCIPAL", "kind_of"]


class ModelKind:
    """The (deterministic) autoencoder: squared reconstruction error, no sampled code."""

    name = "autoencoder"
    #: a Gaussian encoder (mu, logvar): the latent scores "mu_norm", "kl", "elbo" exist
    variational = False
    #: fitting draws nothing at random (the neighbour reference rows never depend on a seed)
    closed_form = False
    #: the score whose negative mean ``Estimator.score`` returns (goodness of fit)
    fit_score = "mse"
    #: global gradient-norm clip of the training loop (None: none)
    grad_clip = None
    #: the per-sample loss is the plain squared error, so training may use the fused trimmed MSE
    fused_mse = True

    def check_score(self, score: str, owner: str, allow_auto: bool = False) -> None:
        """Raise a ConfigError when this kind does not offer ``score``."""
        check_score(score, self.variational, owner, allow_auto=allow_auto)

    def recon_kind(self, output: str) -> str:
        """The reconstruction term of the loss for a network whose output is ``output``."""
        return "mse"

    def network_arch(self, cfg) -> str:
        """The network's architecture as exports describe it ("dense" or "conv")."""
        return cfg.arch

    def describe(self, cfg) -> str:
        """The model's name in an export's metadata, e.g. "autoencoder dense"."""
        return f"{self.name} {self.network_arch(cfg)}"

    def sample_loss(self, out, xb, recon_kind: str, beta: float):
        """Per-sample loss of the network's output ``out`` for the batch ``xb`` (before the sparsity term)."""
        return losses.reconstruction(out.x_hat, xb, "mse")

    def losses(self, model, forward, recon_kind: str, *, noise: float, noise_type: str, sparsity: float,
               trim: float, beta: float = 1.0):
        """(training loss of a batch, deterministic per-sample evaluation loss).

        The training loss draws the denoising corruption and the VAE's z, and trims; the
        evaluation loss (validation, early stopping, ``history_["val_loss"]``) does none of
        these: the same weights always give the same value. ``forward`` is the module the
        training loss runs (DDP across ranks), the evaluation loss runs ``model`` itself.
        """
        forward = forward if forward is not None else model
        sample = self.variational

        def per_sample(out, xb):
            loss = self.sample_loss(out, xb, recon_kind, beta)
            if sparsity > 0:
                loss = loss + sparsity * losses.sparsity(out.z)
            return loss

        def train_loss(xb):
            out = forward(corrupt(xb, noise, noise_type), sample=sample)
            if self.fused_mse and sparsity <= 0:
                return losses.trimmed_mse(out.x_hat, xb, trim)  # one autograd node, trim or not
            return losses.trimmed_mean(per_sample(out, xb), trim)

        def eval_loss(xb):
            return per_sample(model(xb, sample=False), xb)

        return train_loss, eval_loss

    def draw_codes(self, fitted, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` new codes for ``sample``: from the Gaussian fitted to the training codes."""
        return rng.multivariate_normal(fitted.latent_mean, fitted.latent_cov, size=n, method="eigh")

    def affine(self, cfg) -> bool:
        """Whether the network of ``cfg`` is affine in its input (code and reconstruction at z = mu)."""
        return bool(cfg.linear and not cfg.mask_zeros and cfg.output == "identity")

    def latent_gaussian(self, model):
        """A function giving (mean, covariance) of the codes when the kind knows them, else None
        (the post-fit pass then estimates them from the training codes)."""
        return None


class Variational(ModelKind):
    """The VAE: the ELBO with a sampled code, Bernoulli reconstruction for outputs in [0, 1]."""

    name = "vae"
    variational = True
    fit_score = "elbo"
    fused_mse = False
    #: gradients are clipped (global norm 10) for the VAE only: its ELBO sums over features, and on
    #: the ODDS tables its gradient norms reached 150 and were clipped in up to 99% of steps; the
    #: autoencoders' mean squared error stayed below 1.8 on 15 of 16 tables (one step of one table
    #: reached 15.7), where clipping costs ~4% of a step and changes nothing
    grad_clip = 10.0

    def recon_kind(self, output: str) -> str:
        return "bce" if output == "sigmoid" else "mse"

    def sample_loss(self, out, xb, recon_kind: str, beta: float):
        return losses.elbo(out.x_hat, xb, out.mu, out.logvar, beta=beta, kind=recon_kind)

    def draw_codes(self, fitted, rng: np.random.Generator, n: int) -> np.ndarray:
        """From the prior N(0, I)."""
        return rng.standard_normal((n, fitted.model_cfg.latent_dim))


class Principal(ModelKind):
    """PCA: fitted in closed form; its code Gaussian is its own (centred, the explained variances)."""

    name = "pca"
    closed_form = True

    def affine(self, cfg) -> bool:
        return True

    def network_arch(self, cfg) -> str:
        return "dense"  # a linear map, whatever the input's shape

    def describe(self, cfg) -> str:
        return "pca"

    def latent_gaussian(self, model):
        def gaussian():
            var = model.explained_variance.cpu().numpy().astype(np.float64)
            return np.zeros(len(var)), np.diag(var)

        return gaussian


AUTOENCODER, VARIATIONAL, PRINCIPAL = ModelKind(), Variational(), Principal()


def kind_of(model_cfg) -> ModelKind:
    """The kind of a network from its :class:`~aelab.config.ModelConfig`."""
    if model_cfg.kind == "pca":
        return PRINCIPAL
    return VARIATIONAL if model_cfg.variational else AUTOENCODER
