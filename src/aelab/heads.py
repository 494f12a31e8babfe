"""Score heads: every anomaly score, written once, as an ``nn.Module`` that owns its fitted statistics.

A head maps the network's input ``x`` (scaled, in the network's layout) and output ``out``
(an :class:`~aelab.models.AEOutput`) to one float64 score per row, HIGHER = MORE ANOMALOUS.
Its fitted statistics are buffers, so the same module runs in Python (:meth:`Fitted.scores
<aelab.fitted.Fitted.scores>`), inside the exported ONNX graph (:class:`aelab.export.onnx.ScoreGraph`
holds it as a submodule) and on any device.

Heads sit in one registry by name (:data:`HEADS`, filled by :func:`register`): adding a score is
one registered factory and its test. A combined score is a head made of heads (:class:`Sum`).
The formulas, their constants and why they are what they are: :mod:`aelab.scoring`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import losses
from .emission import (EMISSION_BLUR, EMISSION_LIT, SPECTRUM_BINS, SPECTRUM_BLUR, SPECTRUM_MIN_WIDTH,  # noqa: F401
                       SPECTRUM_TAIL, emission_log_density, emission_weights, spectrum_bins, spectrum_log_density)
from .exceptions import ConfigError
from .neighbours import _exporting, _knn_mean, _knn_tables, knn_distance  # noqa: F401

__all__ = ["Head", "Reconstruction", "Latent", "Knn", "Emission", "Forest", "Fusion", "Sum", "RankSum", "HeadSpec",
           "HEADS", "register", "register_fusion", "build_head", "knn_distance", "mahalanobis", "latent_precision",
           "Spectrum", "emission_weights", "emission_log_density", "spectrum_log_density",
           "RELATIVE_EPS", "LATENT_RIDGE", "KNN_WEIGHT", "EMISSION_BLUR", "EMISSION_LIT", "SPECTRUM_BINS",
           "SPECTRUM_BLUR", "SPECTRUM_TAIL", "SPECTRUM_MIN_WIDTH"]

RELATIVE_EPS = 1e-6  # per feature, added to sum_j x_j^2 in "relative"
LATENT_RIDGE = 1e-6  # times trace(C) / k, added to the diagonal of the code covariance
KNN_WEIGHT = 4.0     # weight of the squared distance in "mse+knn" (tuning half of benchmarks/tabular.py)


# ------------------------------------------------------------------ the arithmetic, once
def relative_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_j (x_j - x'_j)^2 / (sum_j x_j^2 + RELATIVE_EPS * d)`` per sample."""
    err = losses.reconstruction(x_hat, x, "mse", reduction="sum")
    xf = x.reshape(x.shape[0], -1)
    return err / (xf.square().sum(dim=1) + RELATIVE_EPS * xf.shape[1])


def latent_precision(cov) -> torch.Tensor:
    """``(C + r I)^{-1}`` with the ridge ``r = LATENT_RIDGE * trace(C) / k`` (float64)."""
    C = torch.atleast_2d(torch.as_tensor(cov, dtype=torch.float64))
    k = C.shape[0]
    r = LATENT_RIDGE * float(torch.trace(C)) / k
    r = r if r > 0 else LATENT_RIDGE
    return torch.linalg.inv(C + r * torch.eye(k, dtype=torch.float64))


def mahalanobis(z: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance of each row of ``z`` (float64 arithmetic)."""
    D = z.to(torch.float64) - mean.to(torch.float64)
    return ((D @ precision) * D).sum(dim=1)


# ------------------------------------------------------------------ heads
class Head(nn.Module):
    """``forward(x, out, exclude=None)``: one float64 score per row. ``exclude`` (the neighbour heads
    only): training rows that are reference rows, which are not their own neighbour."""

    def forward(self, x: torch.Tensor, out, exclude=None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def terms(self, x: torch.Tensor, out, exclude=None) -> dict[str, torch.Tensor]:
        """The named terms this head is made of (itself, for a simple head)."""
        return {self.term: self(x, out, exclude)}

    term = ""


class Reconstruction(Head):
    """``mse`` / ``mae``: mean squared / absolute error; ``relative``: relative squared error."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = self.term = kind

    def forward(self, x, out, exclude=None):
        if self.kind == "relative":
            return relative_error(out.x_hat, x).to(torch.float64)
        return losses.reconstruction(out.x_hat, x, self.kind).to(torch.float64)


class Latent(Head):
    """Squared Mahalanobis distance of the code under the Gaussian fitted to the training codes."""

    term = "latent"

    def __init__(self, mean, cov=None, precision=None):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64).reshape(-1))
        self.register_buffer("precision", latent_precision(cov) if precision is None
                             else torch.as_tensor(precision, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def forward(self, x, out, exclude=None):
        return mahalanobis(out.z, self.mean, self.precision)


class Knn(Head):
    """Mean distance to the k nearest reference rows (scaled training rows, flattened), averaged over ``bags``
    equal bags of them (:mod:`aelab.neighbours`)."""

    term = "knn"

    def __init__(self, ref, k: int, bags: int = 1):
        super().__init__()
        centre, ref_c, ref_t, ref_sq = _knn_tables(torch.as_tensor(ref, dtype=torch.float32))
        self.register_buffer("centre", centre)
        self.register_buffer("ref", ref_c)
        self.register_buffer("ref_t", ref_t)
        self.register_buffer("ref_sq", ref_sq)
        self.k, self.bags = int(k), int(bags)

    def forward(self, x, out, exclude=None):
        return _knn_mean(x, self.centre, self.ref, self.ref_t, self.ref_sq, self.k, exclude, self.bags)


class Emission(Head):
    """Where an image's intensity lies, against where the training images light pixels.

    ``sum_j w_j (-log p_j)``: ``w_j`` the share of the image's intensity in pixel j (its lit
    pixels, :func:`emission_weights`), ``p_j`` the blurred share of training images that light
    pixel j (:func:`emission_log_density`). The mean surprise per unit of intensity: it asks
    where the emissions of a jet image are, not how many or how bright (both are normalised
    away), which is what lets it flag simpler *and* busier images (docs/physics.md). The
    network input is mapped back to intensities by the model's own preprocessing module
    (``prep.inverse``: the scaler and the range compression undone), so the head runs in the
    exported graph like any other.
    """

    term = "emission"

    def __init__(self, log_density, prep: nn.Module):
        super().__init__()
        self.register_buffer("log_density", torch.as_tensor(log_density, dtype=torch.float64).reshape(-1))
        self.prep = prep

    def intensities(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> intensities per pixel, flattened in the user's layout (float64)."""
        return self.prep.inverse(x).reshape(x.shape[0], -1).to(torch.float64)

    def surprise(self, v: torch.Tensor) -> torch.Tensor:
        """``-log p`` of every pixel of the intensities ``v`` (m, D): here where it is, whatever its value."""
        return self.log_density

    def contributions(self, x: torch.Tensor) -> torch.Tensor:
        """``w_j (-log p_j)`` per network input (m, D) float64, in the network's layout: they sum to the score."""
        v = self.intensities(x)
        c = emission_weights(v)[0] * self.surprise(v)
        if self.prep.channels_last:  # the user's (h, w, c) order -> the network's (c, h, w)
            c = c.reshape(-1, *self.prep.input_shape).permute(0, 3, 1, 2)
        return c.reshape(x.shape[0], -1)

    def forward(self, x, out, exclude=None):
        v = self.intensities(x)
        w, _ = emission_weights(v)
        return (w * self.surprise(v)).sum(dim=1)


class Spectrum(Emission):
    """Where an image is lit *and how brightly*, against the training images.

    ``sum_j w_j (-log p_j,k(j))``, with the weights of :class:`Emission` and ``p_jk`` the blurred
    share of training images that light pixel j with a log intensity in bin k
    (:func:`spectrum_log_density`; :data:`SPECTRUM_BINS` equal bins of log intensity between the
    training emissions' :data:`SPECTRUM_TAIL` quantiles, ``lo`` their lower edge and ``width`` their
    width, and one bin either side). The emission density asks where; this one asks where and how
    hard, the joint density of the emissions' position and intensity (on a Lund plane: the angle,
    kt and momentum of each splitting). Not invariant to a change of brightness, unlike "emission".
    """

    term = "spectrum"

    def __init__(self, log_density, lo: float, width: float, prep: nn.Module):
        log_density = torch.as_tensor(log_density, dtype=torch.float64)
        super().__init__(log_density.reshape(-1), prep)
        self.k = int(log_density.shape[-1]) - 2  # the bins within the range
        self.register_buffer("lo", torch.tensor(float(lo), dtype=torch.float64))
        self.register_buffer("width", torch.tensor(float(width), dtype=torch.float64))
        self.register_buffer("offsets", torch.arange(log_density.shape[0], dtype=torch.int64) * (self.k + 2))

    def surprise(self, v: torch.Tensor) -> torch.Tensor:
        return self.log_density[spectrum_bins(v, self.lo, self.width, self.k) + self.offsets]


class Forest(Head):
    """Isolation: ``2^(-E[path] / c(psi))`` of the code (``space="code"``, the score "iforest") or of the network's
    input (``space="input"``, the score "isolation": scikit-learn's IsolationForest on the scaled rows) under the
    isolation forest fitted on the training rows' codes or inputs (:mod:`aelab.forest`), in (0, 1). Its tables
    are buffers, so it runs in the ONNX graph."""

    def __init__(self, tables: dict, space: str = "code"):
        super().__init__()
        self.space = space
        self.term = "iforest" if space == "code" else "isolation"
        from .forest import OPTIONAL_TABLES, TABLES

        for name in TABLES + tuple(t for t in OPTIONAL_TABLES if t in tables):
            v = torch.as_tensor(tables[name])
            self.register_buffer(name, v.to(torch.int64 if name in ("feature", "left", "right") else torch.float64))
        self.depth = int(tables["depth"])
        # -ln 2 / c(psi) as a float64 constant (a Python float would enter the ONNX graph as float32)
        self.register_buffer("rate", torch.tensor(-math.log(2.0) / float(tables["c"]), dtype=torch.float64))

    def forward(self, x, out, exclude=None):
        from .forest import forest_path

        v = out.z if self.space == "code" else x.reshape(x.shape[0], -1)
        path = forest_path(v, self.feature, self.threshold, self.left, self.right, self.value, self.depth)
        return torch.exp(path * self.rate)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """The "error" rule of "isolation" (m, D) float64, summing to the score: the score shared out over the
        inputs in proportion to how much their splits narrowed the row's company on its paths
        (:func:`aelab.forest.forest_split`); evenly where no split did (a forest of single-row trees)."""
        from .forest import forest_split

        if self.space != "input" or not hasattr(self, "share"):
            raise ConfigError(f"the isolation forest of {self.term!r} has no per-input split (on the codes, or fitted "
                              "by an older aelab); explain it with method='shapley'.")
        xf = x.reshape(x.shape[0], -1)
        w = forest_split(xf, self.feature, self.threshold, self.left, self.right, self.share, self.depth)
        total = w.sum(dim=1, keepdim=True)
        s = self(x, None)[:, None]
        return torch.where(total > 0, s * w / total.clamp_min(1e-300), s / xf.shape[1])


class Variational(Head):
    """VAE scores: ``mu_norm`` (|mu|), ``kl`` (KL(q(z|x) || N(0, I))), ``elbo`` (negative ELBO, beta 1)."""

    def __init__(self, kind: str, recon_kind: str = "mse"):
        super().__init__()
        self.kind = self.term = kind
        self.recon_kind = recon_kind

    def forward(self, x, out, exclude=None):
        if out.mu is None:
            raise ConfigError(f"score={self.kind!r} needs a variational model.")
        if self.kind == "mu_norm":
            s = out.mu.norm(dim=1)
        elif self.kind == "kl":
            s = losses.gaussian_kl(out.mu, out.logvar)
        else:
            s = losses.elbo(out.x_hat, x, out.mu, out.logvar, beta=1.0, kind=self.recon_kind)
        return s.to(torch.float64)


class Fusion(Head):
    """A score made of other heads' values: ``combine`` (the one formula, given the terms' values by name)
    applied to ``terms`` (each part's value on this batch)."""

    def combine(self, values: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def terms(self, x, out, exclude=None):
        return {h.term: h(x, out, exclude) for h in self.parts}

    def forward(self, x, out, exclude=None):
        return self.combine(self.terms(x, out, exclude))


class Sum(Fusion):
    """``sum_i weight_i * head_i(x)^power_i / scale_i``: a combined score, each term relative to its
    training mean (so the terms weigh alike)."""

    def __init__(self, parts: list[tuple[Head, int, float, float]]):
        super().__init__()
        self.parts = nn.ModuleList(h for h, _, _, _ in parts)
        self.power = [int(p) for _, p, _, _ in parts]
        self.scale = [float(s) if s and s > 0 else 1.0 for _, _, s, _ in parts]
        self.weight = [float(w) for _, _, _, w in parts]

    def combine(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The score from its terms' values (by term name): the one formula, for a pass that has the terms."""
        total = None
        for h, p, s, w in zip(self.parts, self.power, self.scale, self.weight):
            v = values[h.term].to(torch.float64)
            v = v.square() if p == 2 else v
            t = v / s if w == 1.0 else w * v / s
            total = t if total is None else total + t
        return total

    @property
    def splits(self) -> bool:
        """True when every term is a per-input sum (has ``contributions``) taken to the first power."""
        return all(hasattr(h, "contributions") and p == 1 for h, p in zip(self.parts, self.power))

    def contributions(self, x: torch.Tensor) -> torch.Tensor:
        """Per network input (m, D), float64, summing to the score: the terms' own splits, weighted as the sum
        weighs them (only where :attr:`splits`)."""
        if not self.splits:
            raise ConfigError("this sum has a term that is not a per-input sum; it has no exact per-input split.")
        return sum(h.contributions(x) * (w / s) for h, s, w in zip(self.parts, self.scale, self.weight))


class RankSum(Fusion):
    """``sum_i F_i(head_i(x))``: a rank fusion, each term through its training CDF ``F_i`` (the share of
    training values at or below it, from the sorted training values ``sorted_i``), in [0, terms]. Python
    counts by binary search; an exported graph by comparing with every stored value (the same counts)."""

    def __init__(self, parts: list[Head], sorted_values: list):
        super().__init__()
        self.parts = nn.ModuleList(parts)
        for i, v in enumerate(sorted_values):
            self.register_buffer(f"sorted_{i}", torch.as_tensor(v, dtype=torch.float64).reshape(-1))

    def combine(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for i, h in enumerate(self.parts):
            ref = getattr(self, f"sorted_{i}")
            v = values[h.term].to(torch.float64)
            if _exporting():
                count = (v[:, None] >= ref[None, :]).to(torch.float64).sum(dim=1)
            else:
                count = torch.searchsorted(ref, v.contiguous(), right=True).to(torch.float64)
            t = count / ref.shape[0]
            total = t if total is None else total + t
        return total


# ------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class HeadSpec:
    """How a score is built from the fitted statistics, and what it needs."""

    build: Callable  # (stats: dict) -> Head
    fitted: bool = False       # needs statistics of the training data
    neighbours: bool = False   # needs reference rows kept at fit
    variational: bool = False  # needs a VAE
    emission: bool = False     # needs the emission density of the training images (image models keep one)
    forest: bool = False       # needs the isolation forest fitted on the training codes
    input_forest: bool = False  # needs the isolation forest fitted on the training inputs
    terms: tuple = ()          # a fusion: the scores it sums, each over its training statistics (term_stats)


HEADS: dict[str, HeadSpec] = {}


def register(name: str, *, fitted: bool = False, neighbours: bool = False, variational: bool = False,
             emission: bool = False, forest: bool = False, input_forest: bool = False, terms: tuple = ()):
    """Register ``build(stats) -> Head`` as the score ``name``."""
    def deco(build):
        HEADS[name] = HeadSpec(build, fitted or neighbours or emission or forest or input_forest or bool(terms),
                               neighbours, variational, emission, forest, input_forest, tuple(terms))
        return build
    return deco


def register_fusion(name: str, terms: tuple, rule: str = "std") -> None:
    """Register ``name``: the sum of the registered scores ``terms``, each divided by its training standard
    deviation (``rule="std"``: a standardised sum, up to a constant) or mean (``"mean"``), or each through its
    training CDF (``"rank"``: :class:`RankSum`), from the fitted ``term_stats`` {term: (mean, std, sorted
    values)} of the training rows (a reference row's own neighbour distance left out)."""
    specs = [HEADS[t] for t in terms]

    def build(s):
        ts = s["term_stats"]
        if rule == "rank":
            return RankSum([build_head(t, s) for t in terms], [ts[t][2] for t in terms])
        col = {"mean": 0, "std": 1}[rule]
        return Sum([(build_head(t, s), 1, float(ts[t][col]), 1.0) for t in terms])

    register(name, neighbours=any(h.neighbours for h in specs), forest=any(h.forest for h in specs),
             input_forest=any(h.input_forest for h in specs), emission=any(h.emission for h in specs),
             terms=tuple(terms))(build)


def _latent(s) -> Latent:
    if s.get("latent_cov") is None:  # the statistics of Fitted.score_stats(): the precision itself
        return Latent(s["latent_mean"].cpu(), precision=s["latent_precision"].cpu())
    return Latent(s["latent_mean"], s["latent_cov"])


def _knn(s) -> Knn:
    ref = s["knn_ref"]
    return Knn(ref.cpu() if torch.is_tensor(ref) else ref, s["knn_k"], s.get("knn_bags") or 1)


def _relative_to_mean(s, kind: str) -> tuple:
    """A reconstruction term over its training mean."""
    return Reconstruction(kind), 1, (s["recon_means"] if "recon_means" in s else s)[kind], 1.0


def _latent_over_dim(s) -> tuple:
    """The code's Mahalanobis distance over the code size (its mean under the fitted Gaussian)."""
    latent = _latent(s)
    return latent, 1, latent.dim, 1.0


for _kind in ("mse", "mae", "relative"):
    register(_kind)(lambda s, _k=_kind: Reconstruction(_k))
register("latent", fitted=True)(_latent)
for _kind in ("mse", "relative"):
    register(f"{_kind}+latent", fitted=True)(
        lambda s, _k=_kind: Sum([_relative_to_mean(s, _k), _latent_over_dim(s)]))
register("knn", neighbours=True)(_knn)
register("mse+knn", neighbours=True)(
    lambda s: Sum([_relative_to_mean(s, "mse"), (_knn(s), 2, s["knn_mean_sq"], KNN_WEIGHT)]))
register("mse+latent+knn", neighbours=True)(
    lambda s: Sum([_relative_to_mean(s, "mse"), _latent_over_dim(s), (_knn(s), 1, s["knn_mean"], 1.0)]))
register("emission", emission=True)(lambda s: Emission(s["emission_log_density"], s["preprocess"]))
register("spectrum", emission=True)(lambda s: Spectrum(*s["spectrum"], s["preprocess"]))
register("iforest", forest=True)(lambda s: Forest(s["forest"]))
register("isolation", input_forest=True)(lambda s: Forest(s["input_forest"], space="input"))
#: the neighbour distance plus isolation of the row, each over its training mean; the default for tables stated
#: to be clean (aelab.scoring.DEFAULT_CLEAN_TABLE_SCORE)
register_fusion("knn+isolation", ("knn", "isolation"), rule="mean")
#: every term of the family, each standardised by its training mean and spread (up to a constant)
register_fusion("z:mse+latent+knn+iforest", ("mse", "latent", "knn", "iforest"))
#: intensity images (jet images): where the image is lit plus where and how brightly, each over its training
#: spread; the default for intensity images (aelab.scoring.DEFAULT_INTENSITY_SCORE, benchmarks/jets.py)
register_fusion("emission+spectrum", ("emission", "spectrum"))
for _kind in ("mu_norm", "kl", "elbo"):
    register(_kind, variational=True)(lambda s, _k=_kind: Variational(_k, s.get("recon_kind", "mse")))
del _kind


def build_head(score: str, stats: dict | None = None) -> Head:
    """The head of ``score`` from fitted statistics ``stats`` (``latent_mean``, ``latent_cov``,
    ``recon_means`` {name: mean}, ``knn_ref``, ``knn_k``, ``knn_mean``, ``knn_mean_sq``, ``recon_kind``,
    ``forest`` / ``input_forest``: the tables of :func:`aelab.forest.fit_forest` (codes / inputs), ``knn_bags``,
    ``term_stats``: {term: (training mean, std,
    sorted values)} of a fusion's terms)."""
    spec = HEADS.get(score)
    if spec is None:
        raise ConfigError(f"score={score!r} is not known; expected one of {tuple(HEADS)}.")
    stats = stats or {}
    if spec.terms and not all(t in (stats.get("term_stats") or {}) for t in spec.terms):
        raise ConfigError(f"score={score!r} needs the training statistics of its terms {spec.terms}, which a model "
                          f"keeps when its default score is this sum. Fit with anomaly_score={score!r}, or pass "
                          "another score.")
    if spec.neighbours and stats.get("knn_ref") is None:
        raise ConfigError(f"score={score!r} needs reference rows kept at fit, which a model keeps when its default "
                          "score uses neighbours (tables get one by default). Fit with "
                          f"anomaly_score={score!r}, or pass another score.")
    if spec.emission and stats.get("emission_log_density") is None:
        raise ConfigError(f"score={score!r} needs the emission density of the training images, which a model "
                          "keeps when it is fitted on images; this one was fitted on a table (or saved by an "
                          "older aelab). Refit it on images, or pass another score.")
    if "spectrum" in (score, *spec.terms) and stats.get("spectrum") is None:
        raise ConfigError(f"score={score!r} needs the training images' density of lit pixels by intensity, which an "
                          "image model keeps from this version of aelab on; this one was saved by an older aelab. "
                          "Refit it, or pass score='emission'.")
    if spec.input_forest and stats.get("input_forest") is None:
        raise ConfigError(f"score={score!r} needs the isolation forest fitted on the training rows, which a model "
                          f"keeps when its default score uses it. Fit with anomaly_score={score!r}, or pass another "
                          "score.")
    if spec.forest and stats.get("forest") is None:
        raise ConfigError(f"score={score!r} needs the isolation forest fitted on the training codes, which a model "
                          f"keeps when its default score uses it. Fit with anomaly_score={score!r}, or pass another "
                          "score.")
    if spec.fitted and not spec.emission and stats.get("latent_mean") is None:
        raise ConfigError(f"score={score!r} needs the statistics fitted on the training data.")
    return spec.build(stats)
