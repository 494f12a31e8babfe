"""Entropy and divergences between discrete distributions, and the Gaussian KL of a VAE.

The discrete functions take NumPy arrays (anything ``np.asarray`` accepts, torch tensors
included) of non-negative weights along the **last axis**; each vector is normalised to
sum to one, so counts or histograms can be passed directly. Leading axes broadcast, so
``kl_divergence(P, Q)`` with ``P`` of shape ``(n, k)`` gives ``n`` divergences. A 1-D input
gives a Python ``float``; anything else gives an array.

Units: natural logarithm (nats) by default; ``base=2`` gives bits.

Jensen-Shannon versus symmetric KL
----------------------------------
:func:`js_divergence` is the true Jensen-Shannon divergence, defined through the mixture
``m = (p + q) / 2``::

    JS(p, q) = (KL(p || m) + KL(q || m)) / 2        0 <= JS <= ln 2 (1 bit)

It is finite for any pair, and ``sqrt(JS)`` is a metric. :func:`symmetric_kl` is
``(KL(p || q) + KL(q || p)) / 2``, which some lecture notes print under the name "JS". It
is a different quantity: unbounded, and infinite as soon as one distribution puts mass
where the other has none (for disjoint supports, for example). See ``docs/theory.md``.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any

import numpy as np
from scipy.special import entr, rel_entr

from ._validation import _to_numpy
from .exceptions import ConfigError, DataError

__all__ = ["entropy", "kl_divergence", "js_divergence", "symmetric_kl", "gaussian_kl", "elbo"]


def _log_base(base: float | None) -> float:
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, numbers.Real) or not np.isfinite(base) or base <= 0 or base == 1:
        raise ConfigError(
            f"base must be a positive number other than 1 (e.g. 2 for bits) or None for nats; got {base!r}."
        )
    return float(np.log(base))


def _distribution(p: Any, name: str) -> np.ndarray:
    """Return ``p`` as float64, normalised along the last axis, after checking it."""
    try:
        arr = np.asarray(_to_numpy(p), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be an array of non-negative numbers; could not convert it: {exc}") from exc
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise DataError(f"{name} must have at least one entry along its last axis; got shape {arr.shape}.")
    if np.isnan(arr).any() or np.isinf(arr).any():
        raise DataError(f"{name} contains NaN or infinite values; probabilities must be finite.")
    if (arr < 0).any():
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise DataError(
            f"{name} has negative entries (first {arr[idx]!r} at index {idx}); "
            "pass non-negative weights (probabilities, counts or histogram heights)."
        )
    total = arr.sum(axis=-1, keepdims=True)
    if (total == 0).any():
        raise DataError(
            f"{name} has a vector whose entries are all zero (shape {arr.shape}); "
            "it cannot be normalised into a probability distribution."
        )
    return arr / total


def _pair(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    p, q = _distribution(p, "p"), _distribution(q, "q")
    if p.shape[-1] != q.shape[-1]:
        raise DataError(
            f"p and q must have the same number of outcomes along the last axis; got shapes {p.shape} and {q.shape}."
        )
    try:
        np.broadcast_shapes(p.shape, q.shape)
    except ValueError:
        raise DataError(f"p and q have shapes {p.shape} and {q.shape}, which do not broadcast.") from None
    return p, q


def _out(x: np.ndarray) -> float | np.ndarray:
    return float(x) if np.ndim(x) == 0 else x


def entropy(p: Any, base: float | None = None) -> float | np.ndarray:
    """Shannon entropy ``H(p) = -sum_i p_i log p_i``, with ``0 log 0 = 0``.

    Parameters
    ----------
    p : array_like, shape (..., k)
        Non-negative weights; each vector along the last axis is normalised to sum to one.
    base : float, optional
        Logarithm base. None (default) gives nats; 2 gives bits.

    Returns
    -------
    float or ndarray of shape (...)
        Entropy, between 0 and ``log(k)``.

    Raises
    ------
    DataError
        Negative, NaN or infinite entries, an empty last axis, or an all-zero vector.
    ConfigError
        ``base`` is not a positive number other than 1.

    Examples
    --------
    >>> entropy([1, 1, 1, 1], base=2)
    2.0
    """
    lb = _log_base(base)
    return _out(entr(_distribution(p, "p")).sum(axis=-1) / lb)


def kl_divergence(p: Any, q: Any, base: float | None = None) -> float | np.ndarray:
    """Kullback-Leibler divergence ``KL(p || q) = sum_i p_i log(p_i / q_i)``.

    Terms with ``p_i = 0`` contribute 0; the divergence is ``inf`` if some ``q_i = 0``
    where ``p_i > 0``. It is not symmetric and not bounded.

    Parameters
    ----------
    p, q : array_like, shape (..., k)
        Non-negative weights, normalised along the last axis; leading axes broadcast.
    base : float, optional
        Logarithm base; None (default) gives nats, 2 gives bits.

    Returns
    -------
    float or ndarray
        ``KL(p || q) >= 0``, possibly ``inf``.

    Raises
    ------
    DataError
        Invalid entries (see :func:`entropy`) or shapes that do not match.
    ConfigError
        Invalid ``base``.
    """
    lb = _log_base(base)
    p, q = _pair(p, q)
    # Rounding can give -1e-17 for p == q; the divergence is >= 0 (Gibbs' inequality).
    return _out(np.maximum(rel_entr(p, q).sum(axis=-1), 0.0) / lb)


def js_divergence(p: Any, q: Any, base: float | None = None) -> float | np.ndarray:
    """Jensen-Shannon divergence, with the mixture ``m = (p + q) / 2``.

    ``JS(p, q) = (KL(p || m) + KL(q || m)) / 2``. It is symmetric, always finite,
    bounded by ``ln 2`` nats (1 bit with ``base=2``; the bound is reached for disjoint
    supports), and ``sqrt(JS)`` is a metric (the Jensen-Shannon distance, which is what
    :func:`scipy.spatial.distance.jensenshannon` returns).

    This is **not** :func:`symmetric_kl`, ``(KL(p || q) + KL(q || p)) / 2``, which is
    sometimes mislabelled "JS": that one is unbounded and infinite for disjoint supports.

    Parameters
    ----------
    p, q : array_like, shape (..., k)
        Non-negative weights, normalised along the last axis; leading axes broadcast.
    base : float, optional
        Logarithm base; None (default) gives nats, 2 gives bits.

    Returns
    -------
    float or ndarray
        ``0 <= JS <= log_base(2)``.

    Raises
    ------
    DataError
        Invalid entries or shapes.
    ConfigError
        Invalid ``base``.

    Examples
    --------
    >>> js_divergence([1, 0], [0, 1], base=2)
    1.0
    """
    lb = _log_base(base)
    p, q = _pair(p, q)
    m = (p + q) / 2
    js = (rel_entr(p, m).sum(axis=-1) + rel_entr(q, m).sum(axis=-1)) / 2
    return _out(np.clip(js, 0.0, np.log(2)) / lb)


def symmetric_kl(p: Any, q: Any, base: float | None = None) -> float | np.ndarray:
    """Symmetrised Kullback-Leibler divergence ``(KL(p || q) + KL(q || p)) / 2``.

    This is the quantity some lecture slides write under the name "JS". It is symmetric
    but, unlike the true Jensen-Shannon divergence (:func:`js_divergence`), it is
    **unbounded** and equals ``inf`` whenever one distribution has mass where the other
    has none, e.g. for disjoint supports. Its square root is not a metric.

    Parameters
    ----------
    p, q : array_like, shape (..., k)
        Non-negative weights, normalised along the last axis; leading axes broadcast.
    base : float, optional
        Logarithm base; None (default) gives nats, 2 gives bits.

    Returns
    -------
    float or ndarray
        ``>= 0``, possibly ``inf``.

    Raises
    ------
    DataError
        Invalid entries or shapes.
    ConfigError
        Invalid ``base``.
    """
    lb = _log_base(base)
    p, q = _pair(p, q)
    skl = (rel_entr(p, q).sum(axis=-1) + rel_entr(q, p).sum(axis=-1)) / 2
    return _out(np.maximum(skl, 0.0) / lb)


def _torch_of(*xs: Any):
    """The torch module if any argument is a tensor (without importing torch otherwise)."""
    torch = sys.modules.get("torch")
    if torch is not None and any(isinstance(x, torch.Tensor) for x in xs):
        return torch
    return None


def gaussian_kl(mu: Any, logvar: Any) -> Any:
    """Closed-form ``KL(N(mu, diag(exp(logvar))) || N(0, I))``, summed over the last axis.

    ``KL = 0.5 * sum_j (mu_j**2 + exp(logvar_j) - 1 - logvar_j)``: the regularisation term
    of the VAE loss (Kingma & Welling 2014, appendix B), one value per sample.

    Parameters
    ----------
    mu, logvar : ndarray or torch.Tensor, shape (..., d)
        Mean and log-variance of the diagonal Gaussian posterior; shapes must broadcast.

    Returns
    -------
    ndarray, float or torch.Tensor, shape (...)
        If either input is a torch tensor the result is a tensor (on its device and
        dtype) and differentiable with respect to both inputs; otherwise a NumPy array,
        or a float for 1-D inputs.

    Raises
    ------
    DataError
        0-d inputs, shapes that do not broadcast, or (NumPy inputs) NaN values.
    """
    torch = _torch_of(mu, logvar)
    if torch is not None:
        ref = mu if isinstance(mu, torch.Tensor) else logvar
        mu, logvar = (torch.as_tensor(x, dtype=ref.dtype, device=ref.device) for x in (mu, logvar))
        try:
            torch.broadcast_shapes(mu.shape, logvar.shape)
        except RuntimeError:
            shapes = f"{tuple(mu.shape)} and {tuple(logvar.shape)}"
            raise DataError(f"mu and logvar have shapes {shapes}, which do not broadcast.") from None
        if mu.ndim == 0 or logvar.ndim == 0:
            raise DataError("mu and logvar need at least one dimension (the latent axis, last).")
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
    mu, logvar = (np.asarray(x, dtype=np.float64) for x in (mu, logvar))
    try:
        np.broadcast_shapes(mu.shape, logvar.shape)
    except ValueError:
        raise DataError(f"mu and logvar have shapes {mu.shape} and {logvar.shape}, which do not broadcast.") from None
    if mu.ndim == 0 or logvar.ndim == 0:
        raise DataError("mu and logvar need at least one dimension (the latent axis, last).")
    if np.isnan(mu).any() or np.isnan(logvar).any():
        raise DataError("mu or logvar contains NaN.")
    return _out(0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(axis=-1))


def elbo(log_likelihood: Any, mu: Any, logvar: Any, beta: float = 1.0) -> Any:
    """Per-sample evidence lower bound ``log p(x|z) - beta * KL(q(z|x) || N(0, I))``.

    Parameters
    ----------
    log_likelihood : ndarray or torch.Tensor, shape (...)
        Per-sample reconstruction log-likelihood ``log p(x|z)`` with ``z ~ q(z|x)`` (a
        one-sample Monte Carlo estimate of ``E_q[log p(x|z)]``).
    mu, logvar : ndarray or torch.Tensor, shape (..., d)
        Posterior parameters, as in :func:`gaussian_kl`.
    beta : float, default 1.0
        Weight of the KL term (beta-VAE); 1 gives the ELBO proper, a lower bound on
        ``log p(x)``.

    Returns
    -------
    ndarray, float or torch.Tensor, shape (...)
        The ELBO per sample (higher is better; the VAE loss is its negative).

    Raises
    ------
    ConfigError
        ``beta`` is negative or not finite.
    """
    if not np.isfinite(beta) or beta < 0:
        raise ConfigError(f"beta must be a finite number >= 0; got {beta!r}.")
    torch = _torch_of(log_likelihood, mu, logvar)
    if torch is not None:
        ref = next(x for x in (log_likelihood, mu, logvar) if isinstance(x, torch.Tensor))
        ll, mu, logvar = (torch.as_tensor(x, dtype=ref.dtype, device=ref.device) for x in (log_likelihood, mu, logvar))
    else:
        ll = np.asarray(log_likelihood, dtype=np.float64)
    kl = gaussian_kl(mu, logvar)
    if tuple(ll.shape) != tuple(np.shape(kl)):
        raise DataError(
            f"log_likelihood has shape {tuple(ll.shape)} but the KL term has shape {tuple(np.shape(kl))} "
            "(one value per sample); pass one log-likelihood per sample."
        )
    return ll - beta * kl if torch is not None else _out(ll - beta * kl)
