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
  of a reference set of training rows (a random sample, chosen by ``random_state``, of
  larger training sets). When the training data are stated to be clean (``novelty=True``):
  up to 4,096 rows and k = 5. Otherwise 8 bags of up to 16 rows each, drawn one after the
  other, k the same share of a bag as 50 is of 4,096 rows (the nearest one in larger sets), and
  d_k averaged over the bags (:func:`knn_plan`, :mod:`aelab.neighbours`): with anomalies among the
  training rows, a few neighbours can all be anomalies of the same kind (masking), which a small
  bag rarely holds, and the average over bags removes the luck of one draw; scoring costs 128
  distances per row; the default for tables that may hold anomalies (:data:`DEFAULT_TABLE_SCORE`);
* ``mse+knn``: ``mse(x) / mean_train(mse) + 4 d_k(x)^2 / mean_train(d_k^2)``, the default
  for clean tables before aelab chose its defaults by leave-one-data-set-out (see
  :data:`DEFAULT_TABLE_SCORE`);
* ``mse+latent+knn``: ``mse(x) / mean_train(mse) + latent(x) / k_z + d_k(x) / mean_train(d_k)``,
  the default for tables that may be contaminated until aelab chose it by leave one data set out.
  Each term is relative to its training mean (the distances of reference rows leave the
  row itself out). The forms and the weight 4 were chosen on the tuning half of
  ``benchmarks/tabular.py``: distances to the training data carry much of the signal on
  tables, reconstruction and the code's Mahalanobis distance add what they miss.

A score of image models (the density of where the training images are lit, kept at fit):

* ``emission``: ``sum_j q_j (-log p_j)``, ``q_j`` the share of the image's intensity in
  pixel j and ``p_j`` the share of training images that light pixel j, smoothed
  (``(count + 0.5) / (n + 1)``) and blurred by a Gaussian of 5% of the image side
  (:class:`aelab.heads.Emission`). Brightness and the number of lit pixels are
  normalised away: the score asks where the intensity lies, per unit of it.
* ``spectrum``: the same sum with ``p_jk``, the share of training images that light pixel j
  with a log intensity in bin k (12 equal bins between the training emissions' 0.1% and 99.9%
  quantiles, one bin either side, blurred by one bin and in space as above;
  :class:`aelab.heads.Spectrum`): where and how brightly. Not invariant to brightness.
* ``emission+spectrum``: the two, each over its standard deviation on the training rows.
* ``iforest``: isolation in the code space, ``2^(-E[h(z)] / c(256))`` under an isolation forest
  fitted at fit on the codes of up to 4,096 training rows (:mod:`aelab.forest`), kept when the
  default score uses it;
* ``isolation``: the same isolation of the row itself (scaled, flattened): scikit-learn's
  IsolationForest fitted on up to 4,096 training rows;
* ``knn+isolation``: ``d_k(x) / mean_train(d_k) + isolation(x) / mean_train(isolation)`` (training
  means over all training rows): the default for clean tables (:data:`DEFAULT_CLEAN_TABLE_SCORE`);
* fusions (:func:`aelab.heads.register_fusion`): ``z:mse+latent+knn+iforest`` sums the four terms,
  each over its standard deviation on the training rows (``Fitted.term_stats``); a rank fusion
  sums the terms' training CDFs instead.

VAE-only scores:

* ``mu_norm``: Euclidean norm |mu| of the posterior mean;
* ``kl``: KL( q(z|x) || N(0, I) ), closed form;
* ``elbo``: the negative ELBO with beta = 1 and the reconstruction term at z = mu.

``auto`` (the estimators' default) is resolved at fit by :func:`resolve_score`:
``emission+spectrum`` for intensity images (non-negative images that are not pixels, such as
jet images: benchmarks/jets.py, docs/physics.md); ``relative+latent`` for data min-max
scaled to [0, 1] (images, or tables already in [0, 1]); for other tables ``knn``, the
neighbour distance averaged over small bags of training rows (:data:`DEFAULT_TABLE_SCORE`), or
``knn+isolation`` when the training data are stated to be clean (``novelty=True``,
:data:`DEFAULT_CLEAN_TABLE_SCORE`); both chosen by leave one data set out. The resolved name is
the estimator's ``score_``.
"""

from __future__ import annotations

import torch

from .exceptions import ConfigError
from .heads import (HEADS, KNN_WEIGHT, LATENT_RIDGE, RELATIVE_EPS, Fusion, Sum, build_head, knn_distance,  # noqa: F401
                    latent_precision, mahalanobis, relative_error)

# the score names by what they need, read from the registry of heads (a new head is listed by registering it)
SCORES = tuple(HEADS)
RECONSTRUCTION_SCORES = tuple(s for s, h in HEADS.items() if not (h.fitted or h.variational))
KNN_SCORES = tuple(s for s, h in HEADS.items() if h.neighbours)
FITTED_SCORES = tuple(s for s, h in HEADS.items() if h.fitted and not h.variational)
LATENT_SCORES = tuple(s for s, h in HEADS.items() if h.variational)


def fitted_score(score: str) -> bool:
    """Whether ``score``'s head needs statistics of the training data (the registry says; False if unknown)."""
    return score in HEADS and HEADS[score].fitted


def neighbour_score(score: str) -> bool:
    """Whether ``score``'s head needs reference rows kept at fit."""
    return score in HEADS and HEADS[score].neighbours
RECON_MEAN_SCORES = ("mse", "mae", "relative")  # order of an estimator's ``recon_means_``
KNN_K_CLEAN = 5          # neighbours averaged by the "knn" scores when the training data are clean (novelty=True)
KNN_K_CONTAMINATED = 50  # ... and otherwise: more neighbours than an anomaly cluster has rows (no masking)
KNN_REF_ROWS = 4096      # training rows kept as the neighbours' reference set (a random sample above that) ...
KNN_REF_ROWS_CONTAMINATED = 16   # ... and for the contaminated default, rows per bag, with k scaled to the same share
KNN_BAGS_CONTAMINATED = 8        # ... and bags of them, whose distances are averaged (128 rows in all)


def knn_plan(n: int, novelty: bool) -> tuple[int, int, int]:
    """(reference rows per bag, k, bags) of the "knn" scores for ``n`` training rows.

    Clean data (``novelty=True``): up to :data:`KNN_REF_ROWS` rows and the k = 5 nearest: few neighbours
    measure density best, and 256 rows lost 0.008 AUROC against 4,096.

    Training rows that may hold anomalies: :data:`KNN_BAGS_CONTAMINATED` = 8 bags of up to
    :data:`KNN_REF_ROWS_CONTAMINATED` = 16 rows, each drawn on its own, k the same share of a bag as 50
    is of up to 4,096 rows (the nearest one, once 1,000 rows train), and the distances averaged over
    the bags: the subsampling ensemble of Zimek et al. (2013). A small bag rarely holds more than one
    anomaly of a kind, so a cluster of them cannot mask itself, and the average over bags removes the
    luck of one draw; 128 distances per scored row in all, so the default scores 10^6 rows of a
    10-column table at about the rate of one 128-row reference (benchmarks/score_speed.py). On the 28
    tables of benchmarks/tabular.py (contaminated protocol, 3 seeds), ranked among the 10 peers: 8 bags
    of 16 rows 3.75 (mean AUROC 0.815), 8 of 32 3.96, 8 of 128 3.96 (0.809), 4 of 64 4.21, 2 of 128
    4.14, one reference of 128 rows (the default before) 4.46 (0.785).
    """
    if novelty:
        return min(n, KNN_REF_ROWS), KNN_K_CLEAN, 1
    rows = min(n, KNN_REF_ROWS_CONTAMINATED)
    return rows, max(1, round(KNN_K_CONTAMINATED * rows / min(n, KNN_REF_ROWS))), KNN_BAGS_CONTAMINATED if n > rows else 1


def check_score(score: str, variational: bool, owner: str, allow_auto: bool = False) -> None:
    """``score`` names a registered head the model can compute (read from :data:`HEADS` at the call,
    so a head registered after import is accepted)."""
    allowed = tuple(s for s, h in HEADS.items() if variational or not h.variational)
    if allow_auto and score == "auto":
        return
    if score not in allowed:
        extra = "" if variational or score not in HEADS else " (latent scores need a VAE)"
        shown = (("auto",) if allow_auto else ()) + allowed
        what = "is not available for " + owner if score in HEADS else "is not known"
        raise ConfigError(f"score={score!r} {what}{extra}; expected one of {shown}.")


#: ``anomaly_score="auto"`` for intensity images (non-negative images that are not pixels, e.g. jet images).
#: On the Lund-plane benchmark (benchmarks/jets.py, 3 seeds) "emission" alone reaches AUROC 0.843 QCD-trained but
#: 0.807 top-trained; adding where *and how brightly* the image is lit ("spectrum") lifts the weaker direction.
DEFAULT_INTENSITY_SCORE = "emission+spectrum"


#: ``anomaly_score="auto"`` for tables whose training rows may hold anomalies (the default ``novelty=False``): the
#: neighbour distance averaged over 8 bags of 16 training rows (:func:`knn_plan`). Chosen by leave one data set out
#: (benchmarks/tabular.py --lodo, 28 tables x 3 seeds, contaminated protocol) among the cached defaults and every
#: sum of the terms of one fit (mse, latent, knn, isolation, the forest on the codes, kNN between codes), ranked
#: among the 10 peers: picked in all 28 folds, out-of-sample mean rank 3.75 of 11 (std 2.40), next CBLOF 5.16 (more
#: in that file and docs/anomaly.md, "Out of sample"). It scores at 0.34x the rate of "mse+latent" (1 thread,
#: benchmarks/score_speed.py). Adding the isolation forest of the rows ("knn+isolation") ranked close behind (3.93)
#: and its walk through 100 trees scores at 0.01x-0.03x, so it stays a score by name there.
DEFAULT_TABLE_SCORE = "knn"

#: ``anomaly_score="auto"`` for tables stated to be clean (``novelty=True``): the distance to the 5 nearest of up
#: to 4,096 training rows plus isolation of the row, each over its mean on the training rows. Chosen the same way
#: (normal-only protocol): picked in 27 of 28 folds; out-of-sample mean rank 2.88 of 11 (std 2.29), next KNN 3.43.
DEFAULT_CLEAN_TABLE_SCORE = "knn+isolation"


def resolve_score(score: str, scaler_kind: str, table: bool = True, novelty: bool = False,
                  intensity_images: bool = False) -> str:
    """The concrete score behind ``score`` ("auto" -> a data-dependent default).

    Data min-max scaled to [0, 1] (images, tables in [0, 1]) get "relative+latent"; other
    tables "knn" (:data:`DEFAULT_TABLE_SCORE`, the bagged neighbour distance), or "knn+isolation"
    (:data:`DEFAULT_CLEAN_TABLE_SCORE`) when the user states that the training data are clean
    (``novelty=True``); anything else (images standardised on request) "mse+latent".
    """
    if score != "auto":
        if table and score in HEADS and HEADS[score].emission:
            raise ConfigError(f"anomaly_score={score!r} is the density of where images are lit, but X is read as a "
                              "table. Pass images (n, height, width), or input_kind='image', or another score.")
        return score
    if intensity_images and not table:
        return DEFAULT_INTENSITY_SCORE
    if scaler_kind == "minmax":
        return "relative+latent"
    if table:
        return DEFAULT_CLEAN_TABLE_SCORE if novelty else DEFAULT_TABLE_SCORE
    return "mse+latent"


def score_batch(model, x: torch.Tensor, score: str, recon_kind: str = "mse", stats: dict | None = None,
                out=None, in_reference=None) -> torch.Tensor:
    """Scores of one batch ``x`` (already scaled, on the model's device), by the registered head of ``score``.

    ``stats``: the fitted statistics (see :func:`aelab.heads.build_head`; :meth:`aelab.fitted.Fitted.head`
    builds the head once instead). ``out``: the model's output for ``x`` when the caller has it already.
    ``in_reference``: a boolean per row of ``x`` marking training rows that belong to the
    reference set of the "knn" scores (their own zero distance is left out).
    """
    head = build_head(score, {**(stats or {}), "recon_kind": recon_kind}).to(x.device)
    out = model(x, sample=False) if out is None else out
    return head(x, out, in_reference)


def knn_combined(score: str, dk: torch.Tensor, out, x: torch.Tensor, stats: dict) -> torch.Tensor:
    """One of :data:`KNN_SCORES` from a given neighbour distance ``dk`` (float64), the model's output and ``stats``:
    the head's own formula (``combine`` of :class:`aelab.heads.Fusion`: a sum or a rank fusion) with ``dk`` as
    its neighbour term."""
    head = build_head(score, stats).to(x.device)
    if not isinstance(head, Fusion):
        return dk
    values = {h.term: dk if h.term == "knn" else h(x, out) for h in head.parts}
    return head.combine(values)


def feature_errors_batch(model, x: torch.Tensor) -> torch.Tensor:
    """Per-feature squared reconstruction error, same shape as ``x``."""
    return (model(x, sample=False).x_hat - x).square()
