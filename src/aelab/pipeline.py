"""How one fit's rows reach the training loop: the validation split, each rank's share, the
shuffled batches and the validation blocks, for an array in memory or a streamed source.

:func:`train_network` trains a network on this rank's rows through :func:`aelab.training.train`;
:func:`fit_moments` is the closed-form fit's one pass (PCA). Both take the draft
:class:`~aelab.fitted.Fitted` of the fit (layout, scaler, network, device) and its :class:`Run`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ._validation import check_array, is_source
from .exceptions import DataError
from .fitted import EVAL_ROWS
from .preprocessing import RunningStats
from .training import permuted_batches, train, validation_split

__all__ = ["Run", "train_network", "fit_moments", "equal_shares", "VAL_CACHE_BYTES"]

#: A streamed fit keeps its validation rows in memory up to this size, and re-reads them each epoch above it.
VAL_CACHE_BYTES = 64 * 2**20


class Run(NamedTuple):
    """One fit's run: the ranks (``comm``), the rows over all ranks, the seed, and (saver, resume state)."""

    comm: object
    n: int
    seed: int
    checkpoint: tuple


def equal_shares(train_idx: torch.Tensor, n: int, comm) -> torch.Tensor:
    """This rank's training rows, renumbered from its shard's first row, in the split's random order.

    DDP needs every rank to take the same number of optimiser steps (a rank that stepped
    alone would leave the replicas different), so every rank trains on as many rows as
    the smallest shard holds: the few rows above that (of the order of sqrt(n), drawn at
    random by the split) are left out of the gradient steps, and only of them.
    """
    bounds = comm.bounds(n)
    counts = [int(((train_idx >= a) & (train_idx < b)).sum()) for a, b in zip(bounds, bounds[1:])]
    if min(counts) < 1:
        raise DataError(f"X has {n} rows, too few for {comm.world} ranks: the validation split leaves rank "
                        f"{counts.index(min(counts))} no row to train on. Use fewer ranks, more rows, or a smaller "
                        "validation_fraction.")
    start, stop = comm.shard(n)
    return train_idx[(train_idx >= start) & (train_idx < stop)][: min(counts)] - start


def _streamed(draft, data, train_idx, val_idx, n_local: int, batch_size: int, seed: int, parallel: bool):
    """(batches, val_blocks, generators) over a streamed source: shuffled batches read chunk by chunk."""
    dev = draft.device
    rng = np.random.default_rng(seed)
    val_rows = np.zeros(n_local, dtype=bool)
    val_rows[val_idx.numpy()] = True
    train_rows = None
    if len(val_idx) or parallel:
        train_rows = np.zeros(n_local, dtype=bool)
        train_rows[train_idx.numpy()] = True

    def net(block):
        return torch.from_numpy(draft.to_net(check_array(block, name="a batch of X", dtype=None))).to(dev)

    def batches(epoch):
        for b in data.iter_shuffled_batches(batch_size, rng, rows=train_rows):
            yield net(b)

    def stream_val_blocks():
        for chunk in data.iter_masked_chunks(val_rows):
            for i in range(0, len(chunk), EVAL_ROWS):
                yield net(chunk[i : i + EVAL_ROWS])

    # validation rows that fit in VAL_CACHE_BYTES are read once and kept (in the network's
    # float32 layout); larger ones are streamed again each epoch
    if len(val_idx) * 4 * draft.layout.n_features <= VAL_CACHE_BYTES:
        cached = list(stream_val_blocks()) if len(val_idx) else []

        def val_blocks():
            return iter(cached)
    else:
        val_blocks = stream_val_blocks
    return batches, val_blocks, {"numpy": rng}


def _in_memory(draft, data, train_idx, val_idx, batch_size: int, gen: torch.Generator, parallel: bool):
    """(batches, val_blocks, generators) over an array: the network's rows on the device, permuted each epoch."""
    dev = draft.device
    Xn = torch.from_numpy(draft.to_net(data)).to(dev)
    Xt = Xn[train_idx.to(dev)] if len(val_idx) or parallel else Xn
    Xv = Xn[val_idx.to(dev)]
    del Xn  # with a validation split Xt and Xv are copies: keep one copy of the data

    def batches(epoch):
        return permuted_batches(Xt, batch_size, gen)

    def val_blocks():
        return (Xv[i : i + EVAL_ROWS] for i in range(0, len(Xv), EVAL_ROWS))

    return batches, val_blocks, {"batches": gen}


def train_network(draft, data, run: Run, train_config, losses, validation_fraction: float, verbose: bool):
    """Train ``draft.model`` on ``data``, this rank's rows of the run's ``run.n`` (all of them in one process).

    ``train_config(n_train, n_rows)`` resolves the training settings for this rank's training
    rows; ``losses(model, recon_kind, forward=...)`` gives (training loss, evaluation loss).
    Returns (history, epoch limit).
    """
    dev, model, comm, seed = draft.device, draft.model, run.comm, run.seed
    wrapped = comm.wrap(model, dev)
    train_loss, eval_loss = losses(model, draft.recon_kind, forward=wrapped)
    start, stop = comm.shard(run.n)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    val_idx, train_idx = validation_split(run.n, float(validation_fraction), gen)
    n_val = len(val_idx)
    cfg = train_config(math.ceil(len(train_idx) / comm.world), run.n)
    if comm.parallel:
        train_idx = equal_shares(train_idx, run.n, comm)
        val_idx = val_idx[(val_idx >= start) & (val_idx < stop)] - start
    if is_source(data):
        batches, val_blocks, generators = _streamed(draft, data, train_idx, val_idx, stop - start, cfg.batch_size,
                                                    seed, comm.parallel)
    else:
        batches, val_blocks, generators = _in_memory(draft, data, train_idx, val_idx, cfg.batch_size, gen,
                                                     comm.parallel)

    def val_fn():
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for xb in val_blocks():
            total += eval_loss(xb).double().sum()
        return float(comm.sum(float(total))) / n_val

    saver, resume = run.checkpoint
    history = train(model, train_loss, batches, cfg, dev, val_fn if n_val else None, verbose,
                    comm=comm, wrapped=wrapped, generators=generators, checkpoint=saver, resume=resume)
    return history, cfg.epochs


def fit_moments(draft, data, comm) -> None:
    """The closed-form fit: the mean and covariance of the network rows, accumulated chunk by chunk (float64,
    Chan's merge) and merged over ranks, handed to ``draft.model.fit_moments``."""
    n = len(data)
    moments = RunningStats(covariance=True)
    blocks = data.iter_chunks() if is_source(data) else (data[i : i + EVAL_ROWS] for i in range(0, n, EVAL_ROWS))
    for block in blocks:
        moments.update(draft.to_net(check_array(block, name="a chunk of X", dtype=None)))
    moments = comm.merge(moments)
    draft.model.fit_moments(moments.mean, moments.m2, moments.n)
