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
from .fitted import Fitted, forest_state, knn_reference, post_fit_statistics, term_statistics
from .heads import HEADS
from .scoring import knn_plan, neighbour_score

__all__ = ["finish", "emission_density"]


def emission_density(draft: Fitted, local, owner: str, comm) -> np.ndarray:
    """The "emission" score's ``-log p_j`` (:func:`aelab.heads.emission_log_density`) of an image model: one
    pass over this rank's training rows, each mapped back to intensities as the head maps it, the counts
    of lit pixels added over ranks."""
    from .heads import emission_log_density, emission_weights

    prep = draft.preprocess
    shape = tuple(draft.layout.input_shape)
    acc = {"lit": np.zeros(int(np.prod(shape))), "n": 0}

    def count(x):
        _, lit = emission_weights(prep.inverse(x.cpu()).reshape(x.shape[0], -1))
        acc["lit"] = acc["lit"] + lit.sum(dim=0, dtype=torch.float64).numpy()
        acc["n"] += x.shape[0]

    draft.map(local, count, owner)
    lit, n = comm.sum(acc["lit"]), int(comm.sum(np.asarray([acc["n"]], np.float64))[0])
    grid = (0, 1) if len(shape) == 2 or draft.layout.channels_last else (len(shape) - 2, len(shape) - 1)
    return emission_log_density(lit, n, grid, shape)


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
    if draft.layout.kind == "image":  # the "emission" score's density (the default score of intensity images)
        draft = draft.replace(emission_log_density=emission_density(draft, local, owner, comm))
    if neighbour_score(draft.score):
        rows, k = knn_plan(n, novelty)
        knn, in_reference = knn_reference(local, draft.to_net, n, knn_seed, k, rows, comm=comm)
        draft = draft.replace(**knn)
    if draft.score in HEADS and HEADS[draft.score].forest:
        draft = draft.replace(forest=forest_state(draft, local, n, knn_seed, comm=comm))
    st = post_fit_statistics(draft.model, local, lambda X_, fn, dt: draft.map(X_, fn, owner, dt), draft.score,
                             draft.recon_kind, latent_gaussian, comm=comm)
    scores = st.pop("decision_scores")
    draft = draft.replace(**st)
    if draft.score in HEADS and HEADS[draft.score].terms:
        # a fusion: the training mean and spread of its terms, and of every other term the model can give
        # (so that any fusion of them can be scored from this fit)
        terms = ("mse", "latent") + (("knn",) if draft.knn_ref is not None else ()) + (
            ("iforest",) if draft.forest is not None else ())
        terms += tuple(t for t in HEADS[draft.score].terms if t not in terms)
        draft = draft.replace(term_stats=term_statistics(draft, local, terms, owner, in_reference, comm))
    if scores is None:  # a streamed source with a fitted score, or a neighbour score: a second pass
        scores = comm.concat(draft.scores(local, draft.score, owner, in_reference))
    draft = draft.replace(decision_scores=scores,
                          feature_names=draft.feature_names if feature_names is None else feature_names)
    return draft.replace(**fit_state(draft, local, n, seed, fraction, novelty, in_reference, owner, comm, hashes,
                                     contamination, calibration_rows))
