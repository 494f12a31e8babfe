"""Per-sample anomaly scores, computed batch by batch without gradients.

Every score is deterministic (the VAE is evaluated at z = mu) and follows the
convention HIGHER = MORE ANOMALOUS. All reconstruction terms are computed in the
scaled units the network sees (so features of different units weigh alike); x is a
sample, x' its reconstruction, d the number of features, z the code (mu for the VAE).

Reconstruction scores (any estimator):

* ``mse`` / ``mae``: mean squared / absolute reconstruction error per sample;
* ``relative``: relative squared error ``sum_j (x_j - x'_j)^2 / (sum_j x_j^2 + 1e-6 d)``
  (the "relative Euclidean distance" feature of DAGMM, Zong et al. 2018, squared). For
  intensity data scaled to [0, 1] (images: 0 is "no ink") it removes the bias of ``mse``
  towards samples with little mass: on one-class MNIST a thin "1" has a small absolute
  error under any digit's autoencoder, but not a small relative one.

Scores that use state fitted on the training data (any estimator):

* ``latent``: squared Mahalanobis distance of the code z under the Gaussian fitted to
  the training codes, ``(z - m)^T (C + r I)^{-1} (z - m)`` with ``m = latent_mean_``,
  ``C = latent_cov_`` and the ridge ``r = 1e-6 trace(C) / k``;
* ``mse+latent`` / ``relative+latent``: ``rec(x) / mean_train(rec) + latent(x) / k`` for
  the reconstruction score ``rec`` ("mse" or "relative") and code size k. Each term has
  mean about 1 on the training data, so both weigh alike: a sample is anomalous if it is
  badly reconstructed *or* its code lies far from the training codes. ``mean_train(rec)``
  is stored in ``recon_means_`` (order of :data:`RECON_MEAN_SCORES`);
* ``knn``: the mean Euclidean distance d_k(x) of the scaled sample to its k nearest rows
  of a reference set, up to 4,096 training rows (a random sample, chosen by
  ``random_state``, of larger training sets: scoring costs 4,096 distances per row at
  most). k = 5 when the training data are stated to be clean (``novelty=True``) and 50
  otherwise: with anomalies among the training rows, a few neighbours can all be
  anomalies of the same kind (masking), fifty rarely are;
* ``mse+knn``: ``mse(x) / mean_train(mse) + 4 d_k(x)^2 / mean_train(d_k^2)``, the default
  for clean tables;
* ``mse+latent+knn``: ``mse(x) / mean_train(mse) + latent(x) / k_z + d_k(x) / mean_train(d_k)``,
  the default for tables that may be contaminated.
  Each term is relative to its training mean (the distances of reference rows leave the
  row itself out). The forms and the weight 4 were chosen on the tuning half of
  ``benchmarks/tabular.py``: distances to the training data carry much of the signal on
  tables, reconstruction and the code's Mahalanobis distance add what they miss.

VAE-only scores:

* ``mu_norm``: Euclidean norm |mu| of the posterior mean;
* ``kl``: KL( q(z|x) || N(0, I) ), closed form;
* ``elbo``: the negative ELBO with beta = 1 and the reconstruction term at z = mu.

``auto`` (the estimators' default) is resolved at fit by :func:`resolve_score`:
``mse+latent`` for intensity images (non-negative images that are not pixels, such as
jet images: benchmarks/jets.py, docs/physics.md); ``relative+latent`` for data min-max
scaled to [0, 1] (images, or tables already in [0, 1]); for other tables ``mse+latent+knn``, or ``mse+knn`` when the training data are
stated to be clean (``novelty=True``). The resolved name is the estimator's ``score_``.
"""

from __future__ import annotations

import torch

from . import losses
from .exceptions import ConfigError

RECONSTRUCTION_SCORES = ("mse", "mae", "relative")
KNN_SCORES = ("knn", "mse+knn", "mse+latent+knn")
FITTED_SCORES = ("latent", "mse+latent", "relative+latent") + KNN_SCORES
LATENT_SCORES = ("mu_norm", "kl", "elbo")
SCORES = RECONSTRUCTION_SCORES + FITTED_SCORES + LATENT_SCORES
RECON_MEAN_SCORES = ("mse", "mae", "relative")  # order of an estimator's ``recon_means_``
RELATIVE_EPS = 1e-6  # per feature, added to sum_j x_j^2 in "relative"
KNN_K_CLEAN = 5          # neighbours averaged by the "knn" scores when the training data are clean (novelty=True)
KNN_K_CONTAMINATED = 50  # ... and otherwise: more neighbours than an anomaly cluster has rows (no masking)
KNN_REF_ROWS = 4096      # training rows kept as the neighbours' reference set (a random sample above that)
KNN_WEIGHT = 4.0         # weight of the squared distance in "mse+knn" (tuning half of benchmarks/tabular.py)
LATENT_RIDGE = 1e-6  # times trace(C) / k, added to the diagonal of the code covariance


def check_score(score: str, variational: bool, owner: str, allow_auto: bool = False) -> None:
    allowed = SCORES if variational else RECONSTRUCTION_SCORES + FITTED_SCORES
    if allow_auto and score == "auto":
        return
    if score not in allowed:
        extra = "" if variational or score not in LATENT_SCORES else " (latent scores need a VAE)"
        shown = (("auto",) if allow_auto else ()) + allowed
        raise ConfigError(f"score={score!r} is not available for {owner}{extra}; expected one of {shown}.")


#: ``anomaly_score="auto"`` for intensity images (non-negative images that are not pixels, e.g. jet images)
DEFAULT_INTENSITY_SCORE = "mse+latent"


def resolve_score(score: str, scaler_kind: str, table: bool = True, novelty: bool = False,
                  intensity_images: bool = False) -> str:
    """The concrete score behind ``score`` ("auto" -> a data-dependent default).

    Data min-max scaled to [0, 1] (images, tables in [0, 1]) get "relative+latent"; other
    tables "mse+latent+knn", or "mse+knn" when the user states that the training data are
    clean (``novelty=True``); anything else (images standardised on request) "mse+latent".
    """
    if score != "auto":
        return score
    if intensity_images and not table:
        return DEFAULT_INTENSITY_SCORE
    if scaler_kind == "minmax":
        return "relative+latent"
    if table:
        return "mse+knn" if novelty else "mse+latent+knn"
    return "mse+latent"


def knn_distance(x: torch.Tensor, ref: torch.Tensor, k: int, exclude_self=False, block: int = 1024) -> torch.Tensor:
    """Mean Euclidean distance of each row of ``x`` (flattened) to its ``k`` nearest rows of ``ref`` (float64).

    ``exclude_self``: True when ``x`` is ``ref`` itself, or a boolean tensor marking the rows
    of ``x`` that are rows of ``ref``: their zero distance to themselves is skipped.
    Both sides are centred on the reference mean first: the matrix-product form of the
    distance that ``cdist`` uses loses its digits on data far from the origin.
    """
    centre = ref.mean(dim=0)
    ref = ref - centre
    x = x.reshape(x.shape[0], -1).to(ref.dtype) - centre
    mask = None
    if isinstance(exclude_self, torch.Tensor):
        mask = exclude_self.to(device=x.device, dtype=torch.bool)
    elif exclude_self:
        mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    extra = int(mask is not None and bool(mask.any()))
    kk = min(k + extra, ref.shape[0])
    out = []
    for i in range(0, x.shape[0], block):
        v = torch.cdist(x[i : i + block], ref).clamp_min_(0).topk(kk, dim=1, largest=False).values.double()
        if extra and kk > 1:
            own = v[:, 1:].mean(dim=1)                        # the row itself is the nearest: skip it
            other = v[:, : kk - 1].mean(dim=1) if kk > k else v.mean(dim=1)
            v_mean = torch.where(mask[i : i + block], own, other)
        else:
            v_mean = v.mean(dim=1)
        out.append(v_mean)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=x.device)


def relative_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_j (x_j - x'_j)^2 / (sum_j x_j^2 + RELATIVE_EPS * d)`` per sample."""
    err = losses.reconstruction(x_hat, x, "mse", reduction="sum")
    xf = x.reshape(x.shape[0], -1)
    return err / (xf.square().sum(dim=1) + RELATIVE_EPS * xf.shape[1])


def latent_precision(cov) -> torch.Tensor:
    """``(C + r I)^{-1}`` with the ridge ``r = LATENT_RIDGE * trace(C) / k`` (float64)."""
    C = torch.as_tensor(cov, dtype=torch.float64)
    C = torch.atleast_2d(C)
    k = C.shape[0]
    r = LATENT_RIDGE * float(torch.trace(C)) / k
    r = r if r > 0 else LATENT_RIDGE
    return torch.linalg.inv(C + r * torch.eye(k, dtype=torch.float64))


def mahalanobis(z: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance of each row of ``z`` (float64 arithmetic)."""
    D = z.to(torch.float64) - mean.to(torch.float64)
    return ((D @ precision) * D).sum(dim=1)


def score_batch(model, x: torch.Tensor, score: str, recon_kind: str = "mse", stats: dict | None = None,
                out=None, in_reference=None) -> torch.Tensor:
    """Scores of one batch ``x`` (already scaled, on the model's device).

    ``stats`` (for the fitted scores): tensors ``latent_mean``, ``latent_precision`` and
    the training means ``mse`` / ``relative`` of the reconstruction scores.
    ``out``: the model's output for ``x`` when the caller has it already.
    ``in_reference``: a boolean per row of ``x`` marking training rows that belong to the
    reference set of the "knn" scores (their own zero distance is left out).
    """
    out = model(x, sample=False) if out is None else out
    if score in ("mse", "mae"):
        return losses.reconstruction(out.x_hat, x, score)
    if score == "relative":
        return relative_error(out.x_hat, x)
    if score in KNN_SCORES:
        if stats is None or stats.get("knn_ref") is None:
            raise ConfigError(f"score={score!r} needs reference rows kept at fit, which a model keeps when its "
                              f"default score is one of {KNN_SCORES} (tables get one by default). Fit with "
                              f"anomaly_score={score!r}, or pass another score.")
        dk = knn_distance(x, stats["knn_ref"], stats["knn_k"],
                          exclude_self=in_reference if in_reference is not None else False)
        return knn_combined(score, dk, out, x, stats)
    if score in FITTED_SCORES:
        if stats is None:
            raise ConfigError(f"score={score!r} needs the statistics fitted on the training data.")
        dist = mahalanobis(out.z, stats["latent_mean"], stats["latent_precision"])
        if score == "latent":
            return dist
        rec_name = score.split("+")[0]
        rec = relative_error(out.x_hat, x) if rec_name == "relative" else losses.reconstruction(out.x_hat, x, "mse")
        k = stats["latent_mean"].shape[0]
        return rec.to(torch.float64) / stats[rec_name] + dist / k
    if out.mu is None:
        raise ConfigError(f"score={score!r} needs a variational model.")
    if score == "mu_norm":
        return out.mu.norm(dim=1)
    if score == "kl":
        return losses.gaussian_kl(out.mu, out.logvar)
    return losses.elbo(out.x_hat, x, out.mu, out.logvar, beta=1.0, kind=recon_kind)


def knn_combined(score: str, dk: torch.Tensor, out, x: torch.Tensor, stats: dict) -> torch.Tensor:
    """One of :data:`KNN_SCORES` from the neighbour distance ``dk`` (float64), the model's output and ``stats``.

    Shared by :func:`score_batch` and the exported ONNX graph (:mod:`aelab.export.onnx`), which
    computes ``dk`` its own way (one matrix product and a top-k, any batch size).
    """
    if score == "knn":
        return dk
    rec = losses.reconstruction(out.x_hat, x, "mse").to(torch.float64) / stats["mse"]
    if score == "mse+knn":
        return rec + KNN_WEIGHT * dk.square() / stats["knn_mean_sq"]
    z_dist = mahalanobis(out.z, stats["latent_mean"], stats["latent_precision"])
    return rec + z_dist / stats["latent_mean"].shape[0] + dk / stats["knn_mean"]


def feature_errors_batch(model, x: torch.Tensor) -> torch.Tensor:
    """Per-feature squared reconstruction error, same shape as ``x``."""
    return (model(x, sample=False).x_hat - x).square()
