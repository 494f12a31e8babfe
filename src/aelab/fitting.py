"""The steps of ``fit`` around the training loop, and the empirical threshold rule.

Before training, :func:`survey` reads every row once: the running statistics that all
data-dependent decisions are taken from (so an array and the same rows streamed give the
same decisions) and the row hashes that recognise fit rows later. :func:`checkpointing`
fingerprints the run for its checkpoints. After training, :func:`finish` is the post-fit
pass: the neighbour reference rows, the score statistics, the training scores, the
calibration rows and the threshold. :func:`threshold_rule` is the empirical threshold rule
``set_threshold`` applies to a contamination. Each step returns values; the estimator assigns
its state last.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import check_array, input_dtype, is_source, iter_checked_chunks
from .conformal import fit_state, row_hashes
from .exceptions import DataError
from .fitted import Fitted, knn_reference, post_fit_statistics
from .preprocessing import RunningStats
from .scoring import KNN_K_CLEAN, KNN_K_CONTAMINATED, KNN_SCORES

__all__ = ["Rows", "survey", "checkpointing", "finish", "threshold_rule"]


class Rows(NamedTuple):
    """What one pass over the rows of X found: X checked (``data``), its row count and shape over all
    ranks, this rank's rows (``local``), their merged statistics and this rank's row hashes."""

    data: object
    n: int
    shape: tuple
    local: object
    stats: RunningStats
    hashes: list


def survey(X, comm) -> Rows:
    """Check X (an array or a chunked source) and read its statistics, merged over the ranks."""
    if is_source(X):
        data, n, shape = X, len(X), tuple(X.shape)
        if n < 2:
            raise DataError(f"X has {n} rows; at least 2 are required to fit.")
        local = comm.rows(data, n)
        stats, hashes = RunningStats(), []
        for chunk in iter_checked_chunks(local):  # a bad value is named by its row in all of X
            stats.update(chunk)
            hashes.append(row_hashes(chunk))
        stats.dtype = np.dtype(X.dtype)
    else:
        dtype = input_dtype(X)
        data = check_array(X, min_samples=2, dtype=None)
        n, shape = data.shape[0], data.shape
        local = comm.rows(data, n)
        stats, hashes = RunningStats.of(local), [row_hashes(local)]
        stats.dtype = dtype
    return Rows(data, n, shape, local, comm.merge(stats), hashes)


def checkpointing(owner: str, params: dict, folder, every, resume, comm, rows: Rows) -> tuple:
    """(Checkpointer or None, TrainState or None) of one fit; ``params``: the estimator's parameters."""
    if folder is None and resume is None:
        return None, None
    from .checkpoint import Checkpointer, read_checkpoint, rows_digest

    local, n, shape, stats = rows.local, rows.n, rows.shape, rows.stats
    skip = {"verbose", "n_threads", "device"}
    fingerprint = {"class": owner, "rows": int(n), "shape": list(shape[1:]),
                   "data_mean": float(np.sum(stats.mean)), "data_m2": float(np.sum(stats.m2)),
                   "rows_sha256": rows_digest(local, n, comm),
                   "data_path": "streamed" if is_source(local) else "in memory",
                   "params": {k: v for k, v in params.items() if k not in skip}}
    saver = Checkpointer(folder, every, comm, fingerprint) if folder is not None else None
    state = read_checkpoint(resume, comm, fingerprint) if resume is not None else None
    return saver, state


def finish(draft: Fitted, rows: Rows, seed: int, names, *, novelty: bool, closed_form: bool, random_state,
           validation_fraction, contamination, latent_gaussian, owner: str, comm) -> Fitted:
    """The post-fit pass over the trained ``draft``: everything fit learns after the network, in one Fitted."""
    model, local, n, hashes, recon_kind = draft.model, rows.local, rows.n, rows.hashes, draft.recon_kind
    in_reference = None
    if draft.score in KNN_SCORES:
        k = KNN_K_CLEAN if novelty else KNN_K_CONTAMINATED
        # a model fitted in closed form stays deterministic: its reference rows never depend on a random seed
        ref_seed = 0 if closed_form and random_state is None else seed
        knn, in_reference = knn_reference(local, draft.to_net, n, ref_seed, k, comm=comm)
        draft = draft.replace(**knn)
    st = post_fit_statistics(model, local, lambda X_, fn, dt: draft.map(X_, fn, owner, dt), draft.score,
                             recon_kind, latent_gaussian, comm=comm)
    scores = st.pop("decision_scores")
    draft = draft.replace(**st)
    if scores is None:  # a streamed source with a fitted score: a second, bounded-memory pass
        scores = comm.concat(draft.scores(local, draft.score, owner, in_reference))
    draft = draft.replace(decision_scores=scores, feature_names=names)
    draft = draft.replace(**fit_state(draft, local, n, seed, validation_fraction,
                                      bool(novelty), in_reference, owner, comm, hashes, contamination))
    return draft


def threshold_rule(scores: np.ndarray, fpr: float | None, contamination: float | None) -> dict:
    """The empirical threshold of ``scores`` at a false-positive rate or a contamination, and its rule."""
    from .thresholds import threshold_from_contamination, threshold_from_fpr

    if fpr is not None:
        return {"threshold": float(threshold_from_fpr(scores, fpr)),
                "threshold_rule": {"fpr": float(fpr), "n": int(len(scores))}}
    return {"threshold": float(threshold_from_contamination(scores, contamination)),
            "threshold_rule": {"contamination": float(contamination), "n": int(len(scores))}}
