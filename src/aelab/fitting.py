"""The steps of ``fit`` before the training loop.

:func:`survey` reads every row once: the running statistics that all data-dependent
decisions are taken from (so an array and the same rows streamed give the same decisions)
and the row hashes that recognise fit rows later. :func:`checkpointing` fingerprints the run
for its checkpoints. After training, fit (and fine-tuning) end in :func:`aelab.postfit.finish`.
Each step returns values; the estimator assigns its state last.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import check_array, input_dtype, is_source, iter_checked_chunks
from .conformal import row_hashes
from .exceptions import DataError
from .preprocessing import RunningStats

__all__ = ["Rows", "survey", "checkpointing"]


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
