"""The post-fit pass, written once: what a fit computes after its network is trained.

:func:`finish` takes a draft :class:`~aelab.fitted.Fitted` whose ``model`` is trained and fills in
everything the scores and the decisions need, from the training rows: the neighbour reference
rows (for the "knn" scores), the code Gaussian and reconstruction means
(:func:`aelab.fitted.post_fit_statistics`), the training scores, and the conformal part
(calibration scores, fit-row hashes, the threshold: :func:`aelab.conformal.fit_state`).
``Estimator.fit`` (one process or data-parallel) and quantisation-aware fine-tuning
(:func:`aelab.export.qat.finetune`) both end here, so a fine-tuned model's scores and threshold
come from one module by one rule, as a fitted model's do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .conformal import fit_state
from .fitted import Fitted, forest_state, input_forest_state, knn_reference, post_fit_statistics, term_statistics
from .heads import HEADS
from .scoring import knn_plan, neighbour_score

__all__ = ["finish", "emission_density"]


def emission_density(draft: Fitted, local, owner: str, comm) -> dict:
    """The densities of the "emission" and "spectrum" scores of an image model, as ``Fitted`` fields:
    ``emission_log_density`` (:func:`aelab.emission.emission_log_density`) and ``spectrum`` (its ``-log p_jk``,
    :func:`aelab.emission.spectrum_log_density`, with the lower edge and width of the bins of log intensity).
    Three passes over this rank's training rows, each mapped back to intensities as the heads map it, no
    network: the lit pixels and the extremes of their log intensity; a fine histogram of those (for the
    range of the bins, :func:`aelab.emission.spectrum_range`); the lit pixels per intensity bin. Counts are
    added and extremes merged over ranks, so that every rank and every path gets the same densities."""
    from .emission import (SPECTRUM_BINS, emission_log_density, emission_weights, spectrum_bins,
                           spectrum_log_density, spectrum_range)

    prep = draft.preprocess
    shape = tuple(draft.layout.input_shape)
    D, K, F = int(np.prod(shape)), SPECTRUM_BINS, 4096
    acc = {"lit": np.zeros(D), "n": 0, "lo": np.inf, "hi": -np.inf, "fine": np.zeros(F),
           "hist": np.zeros(D * (K + 2))}

    def lit_of(x):
        v = prep.inverse(x.cpu()).reshape(x.shape[0], -1).to(torch.float64)
        return v, emission_weights(v)[1]

    def count(x):
        v, lit = lit_of(x)
        acc["lit"] = acc["lit"] + lit.sum(dim=0, dtype=torch.float64).numpy()
        acc["n"] += x.shape[0]
        if lit.any():
            lv = torch.log(v[lit])
            acc["lo"], acc["hi"] = min(acc["lo"], float(lv.min())), max(acc["hi"], float(lv.max()))

    draft.map(local, count, owner)
    lit, n = comm.sum(acc["lit"]), int(comm.sum(np.asarray([acc["n"]], np.float64))[0])
    ranges = comm.gather((acc["lo"], acc["hi"]))
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)

    def fine(x):
        v, lit = lit_of(x)
        if lit.any():
            t = ((torch.log(v[lit]) - lo) / max(hi - lo, 1e-300) * F).floor().clamp(0, F - 1).to(torch.int64)
            acc["fine"] = acc["fine"] + torch.bincount(t, minlength=F).to(torch.float64).numpy()

    if np.isfinite(lo):
        draft.map(local, fine, owner)
    low, width = spectrum_range(comm.sum(acc["fine"]), lo, hi, K)
    lo_t, width_t = torch.tensor(low, dtype=torch.float64), torch.tensor(width, dtype=torch.float64)

    def histogram(x):
        v, lit = lit_of(x)
        where = (spectrum_bins(v, lo_t, width_t, K) + torch.arange(D, dtype=torch.int64) * (K + 2))[lit]
        acc["hist"] = acc["hist"] + torch.bincount(where, minlength=D * (K + 2)).to(torch.float64).numpy()

    draft.map(local, histogram, owner)
    hist = comm.sum(acc["hist"]).reshape(D, K + 2)
    grid = (0, 1) if len(shape) == 2 or draft.layout.channels_last else (len(shape) - 2, len(shape) - 1)
    return {"emission_log_density": emission_log_density(lit, n, grid, shape),
            "spectrum": (spectrum_log_density(hist, n, grid, shape), low, width)}


def finish(draft: Fitted, local, n: int, seed: int, *, owner: str, comm, hashes: list, contamination,
           fraction: float | None, novelty: bool, knn_seed: int,
           latent_gaussian: Callable | None = None, feature_names=None, calibration_rows=None) -> Fitted:
    """``draft`` (its network trained) with its statistics, training scores, calibration and threshold.

    ``local``: this rank's training rows (all n of them in one process), array or source;
    ``seed``: the fit's seed (the validation split, whose rows become the calibration rows, is
    drawn from it as the training loop drew it); ``fraction``: the validation fraction (None:
    nothing held out, PCA); ``hashes``: row hashes of the rows the network trained on;
    ``contamination``: the threshold rule (a share, or "auto"); ``knn_seed``: which rows are the
    reference of the "knn" scores (how many, and k, follow from n and ``novelty``: :func:`aelab.scoring.knn_plan`); ``latent_gaussian()``
    overrides the code Gaussian (PCA); ``feature_names`` (when not None) replaces the draft's
    before the conformal part; ``calibration_rows``: a boolean per row of ``local``, False for
    held-out rows that may not calibrate (see :func:`aelab.conformal.fit_state`).
    """
    in_reference = None
    if draft.layout.kind == "image":  # the densities of "emission" and "spectrum" (the default of intensity images)
        draft = draft.replace(**emission_density(draft, local, owner, comm))
    if neighbour_score(draft.score):
        rows, k, bags = knn_plan(n, novelty)
        knn, in_reference = knn_reference(local, draft.to_net, n, knn_seed, k, rows, comm=comm, bags=bags)
        draft = draft.replace(**knn)
    if draft.score in HEADS and HEADS[draft.score].forest:
        draft = draft.replace(forest=forest_state(draft, local, n, knn_seed, comm=comm))
    if draft.score in HEADS and HEADS[draft.score].input_forest:
        draft = draft.replace(input_forest=input_forest_state(draft, local, n, knn_seed, comm=comm))
    st = post_fit_statistics(draft.model, local, lambda X_, fn, dt: draft.map(X_, fn, owner, dt), draft.score,
                             draft.recon_kind, latent_gaussian, comm=comm)
    scores = st.pop("decision_scores")
    draft = draft.replace(**st)
    if draft.score in HEADS and HEADS[draft.score].terms:
        # a fusion: the training mean and spread of its terms, and of every other term the model can give
        # (so that any fusion of them can be scored from this fit)
        terms = ("mse", "latent") + (("knn",) if draft.knn_ref is not None else ()) + (
            ("iforest",) if draft.forest is not None else ()) + (
            ("isolation",) if draft.input_forest is not None else ()) + (
            ("emission", "spectrum") if draft.spectrum is not None else ())
        terms += tuple(t for t in HEADS[draft.score].terms if t not in terms)
        draft = draft.replace(term_stats=term_statistics(draft, local, terms, owner, in_reference, comm))
    if scores is None:  # a streamed source with a fitted score, or a neighbour score: a second pass
        scores = comm.concat(draft.scores(local, draft.score, owner, in_reference))
    draft = draft.replace(decision_scores=scores,
                          feature_names=draft.feature_names if feature_names is None else feature_names)
    return draft.replace(**fit_state(draft, local, n, seed, fraction, novelty, in_reference, owner, comm, hashes,
                                     contamination, calibration_rows))
