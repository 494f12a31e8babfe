"""The data-dependent defaults behind the estimators' "auto" parameters, with the measurements
that chose them: dense or convolutional network, code size, hidden widths, and the batch
size, learning rate and epoch count of training. Pure functions of sizes; the estimators
(:mod:`aelab.estimators`) call them when a parameter is "auto" or None.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["N_PERMUTATIONS", "WIDE_BATCH_ROWS", "DENSE_MAX_FEATURES", "auto_arch", "auto_latent", "auto_hidden", "auto_training"]

#: batch_size="auto" takes 64 rows a step (and lr="auto" 2e-3) above this many rows, 32 (1e-3) up to it.
WIDE_BATCH_ROWS = 5000


#: est.explain: sampled Shapley permutations per row (antithetic pairs). At 16 the sampling noise of the
#: code and neighbour terms hid the shifted feature: precision at k 0.77 against 0.87 at 64 for the
#: reconstruction term on cardio (benchmarks/explain.py); 64 cost about 10 s per 1,000 rows of 57 features
N_PERMUTATIONS = 64


#: "auto" arch: images up to this many values (64 x 64 grey, 36 x 36 RGB) get the dense network
DENSE_MAX_FEATURES = 4096


def auto_arch(d: int, images: bool) -> str:
    """Dense for tables and small images, convolutional for larger images.

    On one-class MNIST (28 x 28) the dense network is several times faster on CPU than the
    plain conv backbone, and its AUCs are at least as good (docs/anomaly.md); a dense first
    layer on big images would be too large, so those keep the conv network.
    """
    return "conv" if images and d > DENSE_MAX_FEATURES else "dense"


def auto_latent(d: int) -> int:
    """Default code size: a quarter of the features, between 2 (or d) and 16."""
    return min(d, 16, max(2, math.ceil(d / 4)))


def auto_hidden(d: int, k: int) -> tuple[int, ...]:
    # wide enough that ReLU units do not die in narrow layers (tested on small tables)
    h1 = min(256, max(64, 2 * d, 4 * k))
    h2 = max(32, 2 * k, h1 // 4)
    return (h1, h2)


def auto_training(batch_size, lr, epochs, n_train: int, n_rows: int) -> tuple[int, float, int]:
    """(rows per step, learning rate, epoch limit) for ``batch_size`` / ``lr`` ("auto" or a value) and
    ``epochs`` (None or a value), with ``n_train`` training rows (per rank) of ``n_rows``.

    "auto" batches are 32 rows, 64 above :data:`WIDE_BATCH_ROWS` rows, with 1e-3 and 2e-3 as
    learning rates (twice the batch, twice the rate); None epochs cover about 3,000 steps of
    32 rows (or of the given batch size), between 10 and 200 epochs.
    """
    auto_batch = batch_size == "auto"
    batch = (64 if n_rows > WIDE_BATCH_ROWS else 32) if auto_batch else int(batch_size)
    lr = (2e-3 if batch == 64 and auto_batch else 1e-3) if lr == "auto" else float(lr)
    if epochs is None:
        steps_per_epoch = max(1, math.ceil(n_train / (32 if auto_batch else batch)))
        epochs = int(np.clip(math.ceil(3000 / steps_per_epoch), 10, 200))
    return batch, lr, int(epochs)
