"""Why a row was flagged: per-feature, per-pixel and per-object contributions that add up to its score.

:func:`explain` (``est.explain(X, method=...)``) returns an :class:`Explanation`: for every
row one contribution per input value, in the input's shape (``(n, d)`` tables, the images'
own shape, ``(n, objects, features)`` collider arrays), with

    score = base_value + contributions.sum()      (per row)

Two methods.

``"error"``: the exact additive decomposition of the model's own score, no background
needed, base value 0. Every term of :mod:`aelab.scoring` is split over the inputs:

* reconstruction terms: ``mse`` gives feature j ``(x_j - x'_j)^2 / d``, ``mae``
  ``|x_j - x'_j| / d``, ``relative`` ``(x_j - x'_j)^2 / (sum x^2 + eps d)``, each divided
  by its training mean where the combined score divides by it (all in the scaled units
  the network sees, exactly as the score computes them);
* the neighbour term: the distance to each of the k neighbours the score found,
  ``|x - r| = sum_j (x_j - r_j)^2 / |x - r|``, is split by its squared per-feature
  differences (a neighbour at distance 0 gives nothing); ``d_k^2`` ("mse+knn") as
  ``d_k`` times that split; bagged neighbours (the contaminated default) are the k of
  every bag, whose mean distance is the score's;
* the isolation term ("isolation", in the clean table default "knn+isolation"), which is not additive in
  the inputs: **the split rule** shares the score among the inputs in proportion to the
  narrowing their splits achieved on the row's paths through the trees, each split adding
  ``-log (share of the node's training rows that went the row's way)`` to its feature (the
  imbalance DIFFI weighs splits by, Carletti et al. 2020; along a path these add up to the log
  of the root's rows over the leaf's, which is what a short path means);
* terms of the code, which are not additive in the inputs (the latent Mahalanobis
  distance; for the VAE ``mu_norm``, ``kl`` and the KL part of ``elbo``): **the decoder
  rule** shares the term among the inputs in proportion to ``(dec(z) - dec(c))_j^2``, the
  squared change that the code's departure from its centre ``c`` (the training codes'
  mean; the prior mean 0 for the VAE-only scores) makes to the decoded output: the inputs
  through which the unusual code shows. Uniform if the decoder maps ``z`` and ``c`` to the
  same output.

``"shapley"``: Shapley values of the *whole* score against a background of training rows
(by default the reference rows a neighbour score keeps), ``v(S) = mean_b score(x_S, fill_b)``;
base value ``mean_b score(b)``. Unlike raw per-feature error they credit the input that broke
a correlation rather than its partners, whose error it spreads (Takeishi 2019; Antwarg et al.
2021). ``dependence`` says how the inputs outside S are filled: "gaussian" (tables' default)
moves them with those in S along the background's regression
(:class:`aelab.shapley.Gaussian`), so points keep the data's correlations; "independent"
(images' default) takes b's values as they are (interventional Shapley values).

* Closed form ("independent") for PCA and the linear autoencoder with the scores "mse", "latent" and
  "mse+latent": the score is then a quadratic ``f(x) = x'Ax + c'x + c0`` in the scaled
  input, and for a quadratic the Shapley value of feature k is exactly

      phi_k = c_k (x_k - mu_k) + sum_j A_kj (x_k x_j + x_k mu_j - mu_k x_j - M_kj)

  with ``mu`` the background mean and ``M = mean_b b b'`` (each pair term ``A_kj x_k x_j``
  is a two-player game whose value splits evenly). A, c and c0 are read off the network
  (in float64) by probing it with the unit vectors, and checked against the score.
* Otherwise permutation sampling with antithetic pairs: a permutation and its reverse
  walk from a background row to x one player at a time, every point batched through
  the model; the background row's score serves as a control variate, which lowers the
  variance and makes the contributions add up to ``score - base`` exactly. ``error``
  holds each contribution's standard error. Images are explained per patch
  (superpixel; ``patch`` pixels square), each pixel getting an equal share of its patch.

The background matters. Against all training rows, a row's value of feature k is
compared with values that other, distant rows take, and every feature of a row far from
the training mean gets credit of order ``x_k (A x)_k``; where the data lie near a
low-dimensional subspace this can bury the feature that broke it (benchmarks/explain.py,
"factors"). ``nearest=N`` compares each row with its N most similar background rows only
(per-row base values): the question becomes "what differs from the normal rows most like
this one". ``nearest`` is measured in the scaled units the network sees.

``"auto"``: the exact "error" split for the scores of intensity images (a sum of one term per
pixel); sampled conditional values for tables; the closed form where it exists for the
"independent" fill; else (images of non-linear models) "error"; ``Explanation.note`` says which
and why. The Shapley machinery
(enumeration, the closed form, the sampler) is :mod:`aelab.shapley`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import losses
from .defaults import N_PERMUTATIONS
from .exceptions import ConfigError, DataError
from .heads import HEADS, build_head
from .kinds import kind_of
from .neighbours import _knn_tables, knn_indices
from .scoring import RELATIVE_EPS, knn_distance, mahalanobis, neighbour_score
from .shapley import (AUTO_PLAYERS, Gaussian, POINTS_PER_BATCH, QUADRATIC_SCORES, _closed_form, _groups,  # noqa: F401
                      _nearest, _PointScorer, _quadratic_form, _sampled, shapley_enumerate)

#: the scores the "error" method splits exactly over the inputs (and the VAE's)
ERROR_SCORES = ("mse", "mae", "relative", "latent", "mse+latent", "relative+latent", "knn", "mse+knn", "mse+latent+knn",
                "isolation", "knn+isolation")


__all__ = ["Explanation", "explain", "error_attribution", "shapley_enumerate", "METHODS"]

METHODS = ("auto", "error", "shapley")
DEPENDENCE = ("auto", "gaussian", "independent")
MAX_SAMPLED_PLAYERS = 1024  # "auto" samples Shapley values of tables up to this many inputs
NEAREST_IMAGES = 20  # nearest="auto" for images: each image against its 20 most similar background images


@dataclass(frozen=True)
class Explanation:
    """Contributions of every input value to every row's score (see :mod:`aelab.explain`).

    ``contributions``: (n, *input shape), float64; ``score``: (n,), the model's score;
    ``base_value``: the score with no input "present" (0 for "error"; the background's mean
    score for "shapley"; one per row with ``nearest``): ``score == base_value + contributions.sum()``
    per row.
    ``exact``: True when the contributions are the method's exact values (the "error"
    decomposition, closed-form Shapley values), False for sampled Shapley values, whose
    standard errors are in ``error`` (same shape). ``method``: "error" or "shapley";
    ``algorithm``: "decomposition", "closed form" or "permutation sampling"; ``note``: how
    the method was chosen. ``feature_names``: one per input value when the data had names.
    """

    contributions: np.ndarray
    score: np.ndarray
    base_value: float | np.ndarray
    exact: bool
    method: str
    algorithm: str
    score_name: str
    error: np.ndarray | None = None
    feature_names: list[str] | None = None
    note: str = ""
    input_shape: tuple = field(default=())

    def __len__(self) -> int:
        return len(self.score)

    @property
    def flat(self) -> np.ndarray:
        """Contributions as (n, number of input values)."""
        return self.contributions.reshape(len(self.contributions), -1)

    def residual(self) -> np.ndarray:
        """``score - base_value - sum(contributions)`` per row (0 up to rounding)."""
        return self.score - self.base_value - self.flat.sum(axis=1)

    def labels(self) -> list[str]:
        """A name per input value: the data's column names, else its index (``"[i, j]"`` beyond tables)."""
        if self.feature_names is not None:
            return list(self.feature_names)
        shape = self.input_shape or self.contributions.shape[1:]
        if len(shape) == 1:
            return [str(i) for i in range(shape[0])]
        return ["[" + ", ".join(map(str, idx)) + "]" for idx in np.ndindex(*shape)]

    def top(self, k: int = 5) -> np.ndarray:
        """(n, k) indices (into :attr:`flat`) of each row's largest contributions, largest first."""
        k = min(int(k), self.flat.shape[1])
        order = np.argsort(-self.flat, axis=1, kind="stable")
        return order[:, :k]

    def table(self, X=None, rows=None, top: int | None = 5) -> list[dict]:
        """Rows ``{row, rank, feature, value, contribution}`` of the ``top`` contributions of each
        row (all of them when ``top`` is None; among the ``top``, contributions of exactly 0 after the first,
        such as the dark pixels of a jet image, are left out: they are no reason); ``value`` is the input
        value (X in user units) when X is given; ``rows`` renumbers the rows (e.g. their indices in a larger
        file)."""
        names = self.labels()
        flatX = None if X is None else np.asarray(X, dtype=np.float64).reshape(len(self), -1)
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        idx = self.top(self.flat.shape[1] if top is None else top)
        out = []
        for i in range(len(self)):
            for rank, j in enumerate(idx[i], 1):
                if top is not None and rank > 1 and self.flat[i, j] == 0:
                    break
                rec = {"row": int(rows[i]), "rank": rank, "feature": names[j]}
                rec["value"] = float(flatX[i, j]) if flatX is not None else float("nan")
                rec["contribution"] = float(self.flat[i, j])
                out.append(rec)
        return out


# ---------------------------------------------------------------------------------- "error"
def _decoder_rule(model, x, total, z, centre, mask_zeros: bool) -> torch.Tensor:
    """Share ``total`` (m,) among the inputs in proportion to (dec(z) - dec(centre))^2 (float64)."""
    delta = (model.decode(z) - model.decode(centre.to(z.dtype).expand_as(z))).reshape(z.shape[0], -1).double()
    if mask_zeros:
        delta = torch.where(x.reshape(x.shape[0], -1) == 0, torch.zeros_like(delta), delta)
    w = delta.square()
    s = w.sum(dim=1, keepdim=True)
    uniform = torch.full_like(w, 1.0 / w.shape[1])
    share = torch.where(s > 0, w / s.clamp_min(torch.finfo(torch.float64).tiny), uniform)
    return total.double()[:, None] * share


def _neighbours(x: torch.Tensor, ref: torch.Tensor, k: int, bags: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(x - r for its k nearest reference rows r of every bag, (m, bags * k, D) float64; the score's neighbour
    distance d_k, the mean of those bags * k distances)."""
    xf = x.reshape(x.shape[0], -1)
    centre, _, ref_t, ref_sq = _knn_tables(ref)
    idx = knn_indices(xf.to(ref_t.dtype) - centre, ref_t, ref_sq, k, bags)
    return xf.double()[:, None, :] - ref.double()[idx], knn_distance(x, ref, k, bags=bags)


def _knn_split(diff: torch.Tensor, dk: torch.Tensor) -> torch.Tensor:
    """(m, D) float64: the mean distance to the k nearest rows, |x - r| = sum_j (x_j - r_j)^2 / |x - r|, split
    by squared per-feature differences and rescaled to the score's own d_k (float32 arithmetic), so that each
    row sums to the score's term."""
    sq = diff.square()
    dist = sq.sum(dim=2).sqrt()                                  # (m, k)
    w = torch.where(dist > 0, 1.0 / dist.clamp_min(1e-300), torch.zeros_like(dist))
    split = (sq * w[..., None]).mean(dim=1)
    total = split.sum(dim=1, keepdim=True)
    return torch.where(total > 0, split * (dk.double()[:, None] / total.clamp_min(1e-300)), split)


def error_attribution(model, x: torch.Tensor, score: str, recon_kind: str = "mse",
                      stats: dict | None = None, neighbours=None) -> torch.Tensor:
    """Per-input contributions (m, D) float64 of one network batch ``x`` whose rows sum to the score
    (the "error" method; see :mod:`aelab.explain` for the rule of each term).

    ``neighbours(x) -> (x - r for the k nearest r (m, k, D), d_k (m,))`` replaces the search of the
    "knn" scores (the exported ONNX graph brings its own).
    """
    out = model(x, sample=False)
    m = x.shape[0]
    xf, rf = x.reshape(m, -1).double(), out.x_hat.reshape(m, -1).double()
    d = xf.shape[1]
    sq = (xf - rf).square()
    mask_zeros = bool(getattr(getattr(model, "cfg", None), "mask_zeros", False))

    def latent():
        dist = mahalanobis(out.z, stats["latent_mean"], stats["latent_precision"])
        return _decoder_rule(model, x, dist, out.z, stats["latent_mean"], mask_zeros)

    def rec(name):
        if name == "mse":
            return sq / d
        if name == "mae":
            return (xf - rf).abs() / d
        return sq / (xf.square().sum(dim=1, keepdim=True) + RELATIVE_EPS * d)  # relative

    if score in ("mse", "mae", "relative"):
        return rec(score)
    if score in HEADS and HEADS[score].emission:  # w_j (-log p_j): the pixel's own term, no network
        return build_head(score, stats).to(x.device).contributions(x)  # (a sum of them: each term's own)
    if score not in ERROR_SCORES and not HEADS[score].variational:
        raise ConfigError(f"score={score!r} has no exact per-input split (the 'error' method covers {ERROR_SCORES}); "
                          "explain it with method='shapley' (pass background rows where the model keeps none), "
                          "or explain one of those scores.")
    if score == "latent":
        return latent()
    if score in ("mse+latent", "relative+latent"):
        name = score.split("+")[0]
        return rec(name) / stats[name] + latent() / stats["latent_mean"].shape[0]
    def knn():
        diff, dk = (neighbours(x) if neighbours is not None
                    else _neighbours(x, stats["knn_ref"], stats["knn_k"], stats.get("knn_bags") or 1))
        return _knn_split(diff, dk)

    if score in ("isolation", "knn+isolation"):
        iso = build_head("isolation", stats).to(x.device).split(x)
        if score == "isolation":
            return iso
        ts = stats["term_stats"]
        return knn() / float(ts["knn"][0]) + iso / float(ts["isolation"][0])
    if neighbour_score(score):
        split = knn()
        if score == "knn":
            return split
        if score == "mse+knn":
            dk = split.sum(dim=1, keepdim=True)
            return rec("mse") / stats["mse"] + 4.0 * dk * split / stats["knn_mean_sq"]
        return rec("mse") / stats["mse"] + latent() / stats["latent_mean"].shape[0] + split / stats["knn_mean"]
    if out.mu is None:
        raise ConfigError(f"score={score!r} needs a variational model.")
    zero = torch.zeros(out.mu.shape[1], device=x.device)
    if score == "mu_norm":
        return _decoder_rule(model, x, out.mu.norm(dim=1), out.mu, zero, mask_zeros)
    kl = _decoder_rule(model, x, losses.gaussian_kl(out.mu, out.logvar), out.mu, zero, mask_zeros)
    if score == "kl":
        return kl
    if recon_kind == "mse":  # elbo
        return 0.5 * sq + kl
    p = out.x_hat.reshape(m, -1).clamp(1e-6, 1 - 1e-6)
    bce = torch.nn.functional.binary_cross_entropy(p, x.reshape(m, -1), reduction="none").double()
    return bce + kl


def _background(fitted, background, owner: str):
    """Flattened network-layout background rows, or None when neither given nor kept by the model."""
    if background is not None:
        Bn = fitted.map(background, lambda x: x.reshape(len(x), -1), f"{owner} (background)", np.float32)
        if len(Bn) < 1:
            raise DataError("background has no rows; pass some training rows, e.g. background=X_train[:200].")
        return Bn
    if fitted.knn_ref is not None:  # the rows of the neighbour score's bags, each once
        ref = np.asarray(fitted.knn_ref, np.float32)
        return ref if fitted.knn_bags == 1 else np.unique(ref, axis=0)
    return None


def _feature_names(X, estimator, n_values: int):
    cols = getattr(X, "columns", None)
    if cols is None:
        try:
            cols = getattr(estimator, "feature_names_in_", None)
        except Exception:  # not fitted with names, or an estimator without the attribute
            cols = None
    if cols is None:
        return None
    names = [str(c) for c in cols]
    return names if len(names) == n_values else None


def _pixel_shares(f, X, owner: str, groups: np.ndarray, G: int) -> np.ndarray:
    """(n, D): each input's share of its patch's Shapley value, in proportion to its squared reconstruction
    error (the pixels through which the patch changes the score; equal shares where a patch has none).
    The shares of a patch sum to 1, so the contributions still add up to the score."""

    def err(x):
        return (x - f.model(x, sample=False).x_hat).square().reshape(len(x), -1)

    E = f.map(X, err, owner, np.float64)
    tot = np.stack([np.bincount(groups, weights=e, minlength=G) for e in E]) if len(E) else np.zeros((0, G))
    size = np.bincount(groups, minlength=G).astype(np.float64)
    return np.where(tot[:, groups] > 0, E / np.where(tot > 0, tot, 1.0)[:, groups], 1.0 / size[groups])


def explain(estimator, X, method: str = "auto", background=None, *, score: str | None = None, patch="auto",
            n_permutations: int = N_PERMUTATIONS, nearest: int | str | None = "auto", dependence: str = "auto",
            random_state=0) -> Explanation:
    """Contributions of every input value of every row of X to its anomaly score.

    ``method``: "error" (the exact decomposition of the score), "shapley" (Shapley values
    against ``background``) or "auto"; see :mod:`aelab.explain`. ``background``: training
    rows for "shapley" (default: the training rows a neighbour score keeps, up to 128 or 4,096 with novelty=True;
    models without them need it). ``score``: the score to explain (default: the model's).
    ``patch``: images, pixels per side of the square patches whose Shapley values are
    sampled ("auto": about 64 patches). ``n_permutations``: sampled permutations per row
    (in antithetic pairs; default :data:`N_PERMUTATIONS`, 64). ``nearest``: Shapley values of each row against only its ``nearest``
    background rows (the most similar training rows; rows equal to it left out) instead of all, so
    the base value is one per row; "auto" (default): 20 for images (a digit is compared with the digits most
    like it), all rows (None) for tables. ``dependence``: how "shapley" fills the inputs outside a coalition:
    "gaussian" (conditionally on those inside, features that move together move together; see
    :class:`aelab.shapley.Gaussian`), "independent" (from the background row as it is: interventional
    Shapley values, with the closed form for affine networks), or "auto" (gaussian for tables,
    independent for images). ``random_state`` seeds the sampler.
    """
    f = estimator.fitted_ if hasattr(estimator, "fitted_") else estimator
    owner = type(estimator).__name__
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not known; expected one of {METHODS}.")
    if not isinstance(n_permutations, (int, np.integer)) or isinstance(n_permutations, bool) or n_permutations < 4:
        raise ConfigError(f"n_permutations must be an integer >= 4 (antithetic pairs, at least two for a "
                          f"standard error), got {n_permutations!r}.")
    if nearest == "auto":
        nearest = NEAREST_IMAGES if f.layout.image else None
    elif nearest is not None and (not isinstance(nearest, (int, np.integer)) or isinstance(nearest, bool)
                                  or nearest < 1):
        raise ConfigError(f"nearest must be 'auto', None (every background row) or a positive integer (background "
                          f"rows per row), got {nearest!r}.")
    if dependence not in DEPENDENCE:
        raise ConfigError(f"dependence={dependence!r} is not known; expected one of {DEPENDENCE}.")
    if dependence == "gaussian" and f.layout.image:
        raise ConfigError("dependence='gaussian' imputes the features of a table; images are explained per patch "
                          "against whole background patches. Use dependence='independent' (or 'auto').")
    dependence = ("independent" if f.layout.image else "gaussian") if dependence == "auto" else dependence
    score = score or f.score
    kind_of(f.model_cfg).check_score(score, owner)
    stats = f.score_stats() if score not in ("mse", "mae", "relative", "mu_norm", "kl", "elbo") else None
    if neighbour_score(score) and "knn_ref" not in stats:
        raise ConfigError(f"score={score!r} needs reference rows kept at fit, which this model has not (its "
                          f"default score is {f.score!r}). Explain another score, or fit with anomaly_score={score!r}.")
    Xn = f.map(X, lambda x: x.reshape(len(x), -1), owner, np.float32)
    n = len(Xn)
    names = _feature_names(X, estimator, f.layout.n_features)
    to_user = lambda a: f.layout.from_net(a.reshape(len(a), *f.net_shape))  # noqa: E731

    groups, p = _groups(f, patch)
    G = int(groups.max()) + 1 if len(groups) else 0
    quad = _quadratic_form(f, score, stats) if method in ("auto", "shapley") and dependence == "independent" else None
    Bn = _background(f, background, owner) if method in ("auto", "shapley") else None
    note = ""
    if method == "auto":
        if score in HEADS and HEADS[score].emission:
            chosen, note = "error", ("auto: the exact per-pixel split (the score is a sum of one term per pixel, "
                                     "needing no background)")
        elif quad is not None and Bn is not None:
            chosen, note = "closed", "auto: closed-form Shapley values (affine network, quadratic score)"
        elif Bn is not None and G <= MAX_SAMPLED_PLAYERS:
            chosen, note = "sampled", ("auto: sampled Shapley values, features imputed conditionally (a table)"
                                       if dependence == "gaussian" else
                                       f"auto: sampled Shapley values per {p}x{p} patch against each image's "
                                       f"{nearest} nearest background images" if f.layout.image and nearest else
                                       "auto: sampled Shapley values (no closed form for this model and score)")
        else:
            why = ("no background rows (pass background=...)" if Bn is None else f"{G} inputs")
            chosen, note = "error", f"auto: the exact 'error' decomposition ({why})"
    elif method == "shapley":
        if Bn is None:
            raise ConfigError(f"method='shapley' needs background rows: this model keeps none (its score {score!r} "
                              "uses no neighbours). Pass some training rows, e.g. background=X_train[:200].")
        chosen = "closed" if quad is not None else "sampled"
        if dependence == "gaussian":
            note = "shapley: the inputs outside a coalition imputed conditionally (Gaussian)"
    else:
        chosen = "error"

    if chosen == "error":
        stats_e = stats

        def fn(x):
            return error_attribution(f.model, x, score, f.recon_kind, stats_e)

        contrib = f.map(X, fn, owner, np.float64).reshape(n, -1) if n else np.zeros((0, len(groups)))
        scores = f.scores(X, score, owner)
        return Explanation(to_user(contrib), scores, 0.0, True, "error", "decomposition", score, None, names,
                           note, f.layout.input_shape)

    fn = _PointScorer(f, score, stats)
    scores = f.scores(X, score, owner)
    choices = None if nearest is None else _nearest(Xn, Bn, int(nearest))
    if chosen == "closed":
        A, c, c0 = quad
        Xs = Xn[: min(n, 8)].astype(np.float64)
        q = np.einsum("nd,de,ne->n", Xs, A, Xs) + Xs @ c + c0
        if np.allclose(q, scores[: len(Xs)], rtol=1e-4, atol=1e-6):
            phi, base = _closed_form(Xn, Bn, A, c, c0, choices)
            return Explanation(to_user(phi), scores, base, True, "shapley", "closed form", score, None, names,
                               note, f.layout.input_shape)
        chosen, note = "sampled", note + " (the closed form did not match the score: sampled instead)"

    rng = np.random.default_rng(random_state)
    fB = fn(Bn)
    base = float(fB.mean()) if choices is None else fB[choices].mean(axis=1)
    fX = fn(Xn)
    gaussian = Gaussian(Bn) if dependence == "gaussian" else None
    phi_g, se_g = _sampled(fn, Xn, Bn, groups, int(n_permutations) // 2, rng, fX, fB, base, choices, gaussian)
    share = _pixel_shares(f, X, owner, groups, G) if G < len(groups) else 1.0
    phi = phi_g[:, groups] * share
    se = se_g[:, groups] * share
    # the sampler's own scores fX equal `scores` up to float32 rounding; that difference is spread evenly
    # over the contributions, so that they add up to the reported scores
    phi += ((scores - fX) / phi.shape[1])[:, None]
    alg = "permutation sampling" + (f" ({p}x{p} patches, shared by pixel error)" if G < len(groups) else "") + (
        ", conditional (Gaussian)" if gaussian is not None else "")
    return Explanation(to_user(phi), scores, base, False, "shapley", alg, score, to_user(se), names, note,
                       f.layout.input_shape)
