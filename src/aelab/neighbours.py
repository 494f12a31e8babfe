"""The neighbour distance of the "knn" scores: the mean distance to the k nearest reference rows, in bags.

The reference rows (scaled training rows, flattened) come in ``bags`` equal bags, each drawn on its
own from the training rows (:func:`reference_rows`). The distance of a row is the
mean, over the bags, of its mean distance to the k nearest rows of each bag; with one bag it is
the plain k-nearest-neighbour distance. Bagging small references is the subsampling ensemble of
Zimek et al. (2013, "Subsampling for efficient and effective unsupervised outlier detection
ensembles"): each small bag sees few of the anomalies that trained with the normal rows, so a
cluster of them does not mask itself, and averaging bags removes the luck of a single draw
(:func:`aelab.scoring.knn_plan` says how many, with the measurements).

The mean over the bags of k distances each is the mean over all ``bags * k`` selected
distances, so the neighbours of a row are one (rows, bags * k) index (:func:`knn_indices`), which
the per-feature split of :mod:`aelab.explain` and the ONNX attribution graph read as they read one
bag. Head, explanation, Shapley sampler and exported graph all rank and measure here.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import check_array, is_source

__all__ = ["knn_distance", "knn_indices", "knn_reference", "reference_rows", "EXACT_BLOCK"]

#: Elements of the (rows, k, features) differences held at once when the nearest rows' distances are
#: recomputed (a block of rows at a time; one block when exporting).
EXACT_BLOCK = 1 << 22


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def _knn_tables(ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centre, ref - centre, -2 (ref - centre)^T, |ref - centre|^2) of reference rows, float32."""
    ref = ref.reshape(ref.shape[0], -1).float()
    centre = ref.mean(dim=0)
    ref = ref - centre
    return centre, ref.contiguous(), (-2.0 * ref).T.contiguous(), ref.square().sum(dim=1)


def _bag_topk(part: torch.Tensor, k: int, bags: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices into the whole reference), each (rows, bags, k), of the k smallest entries of ``part``
    (rows, bags * bag) within each bag."""
    size = part.shape[1] // bags
    grouped = part.reshape(part.shape[0], bags, size)
    if min(k, size) == 1:  # the nearest of each bag (the contaminated default): a minimum, not a selection
        v, i = grouped.min(dim=2, keepdim=True)
    else:
        v, i = grouped.topk(min(k, size), dim=2, largest=False)
    return v, i + (torch.arange(bags, device=part.device) * size)[None, :, None]


def knn_indices(xc: torch.Tensor, ref_t: torch.Tensor, ref_sq: torch.Tensor, k: int, bags: int = 1) -> torch.Tensor:
    """(rows, bags * k): the k nearest reference rows of each centred, flattened row of ``xc`` in every bag,
    ranked by one matrix product plus a bias (``|x - c - r|^2 = |x - c|^2 - 2 r.(x - c) + |r|^2``)."""
    idx = _bag_topk(torch.addmm(ref_sq, xc, ref_t), k, bags)[1]
    return idx.reshape(idx.shape[0], -1)


def _knn_mean(x, centre, ref, ref_t, ref_sq, k: int, exclude=None, bags: int = 1) -> torch.Tensor:
    """Mean distance of each row of ``x`` to its k nearest reference rows, averaged over the bags (float64).

    Both sides are centred on the reference mean. One matrix product plus a bias ranks the
    reference rows of each bag, then the distances of the k selected rows are recomputed from
    their direct differences: exact to float32 rounding, and the same whatever the batch a row
    comes in. ``exclude``: a boolean per row marking rows that are themselves reference rows; in a
    bag where such a row's nearest distance is exactly zero (the row itself), that zero is skipped.
    """
    xc = x.reshape(x.shape[0], -1).to(ref_t.dtype) - centre
    part = torch.addmm(ref_sq, xc, ref_t)
    extra = int(exclude is not None and bool(exclude.any()))
    size = part.shape[1] // bags
    kk = min(k + extra, size)
    idx = _bag_topk(part, kk, bags)[1].reshape(part.shape[0], bags * kk)
    n = xc.shape[0]
    if not isinstance(n, int) or _exporting():  # a graph: one block, whatever the batch size
        d2 = (xc[:, None, :] - ref[idx]).square().sum(-1, dtype=torch.float64)
    else:
        step = max(1, EXACT_BLOCK // max(1, bags * kk * xc.shape[1]))
        d2 = torch.cat([(xc[i : i + step, None, :] - ref[idx[i : i + step]]).square().sum(-1, dtype=torch.float64)
                        for i in range(0, n, step)]) if n else part[:, : bags * kk].double()
    d = d2.reshape(d2.shape[0], bags, kk)
    d = (d if kk == 1 else d.sort(dim=2).values).sqrt()   # (rows, bags, kk)
    if extra and kk > 1:
        other = d[:, :, : kk - 1].mean(dim=2) if kk > k else d.mean(dim=2)
        own = torch.where(d[:, :, 0] == 0, d[:, :, 1:].mean(dim=2), other)  # the row itself is the nearest: skip it
        return torch.where(exclude.to(device=d.device, dtype=torch.bool)[:, None], own, other).mean(dim=1)
    return d.mean(dim=(1, 2))


def knn_distance(x: torch.Tensor, ref: torch.Tensor, k: int, exclude_self=False, block: int = 4096,
                 bags: int = 1) -> torch.Tensor:
    """Mean Euclidean distance of each row of ``x`` (flattened) to its ``k`` nearest rows of ``ref`` (float64),
    averaged over ``bags`` equal consecutive bags of ``ref``.

    ``exclude_self``: True when ``x`` is ``ref`` itself, or a boolean tensor marking the rows
    of ``x`` that are rows of ``ref``: their zero distance to themselves is skipped.
    """
    centre, ref_c, ref_t, ref_sq = _knn_tables(ref.to(x.device))
    n = x.shape[0]
    mask = exclude_self if isinstance(exclude_self, torch.Tensor) else (
        torch.ones(n, dtype=torch.bool, device=x.device) if exclude_self else None)
    out = [_knn_mean(x[i : i + block], centre, ref_c, ref_t, ref_sq, k, None if mask is None else mask[i : i + block],
                     bags) for i in range(0, n, block)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=x.device)


# ------------------------------------------------------------------ which training rows are the reference
def knn_reference(X, to_net, n: int, seed: int, k: int, rows: int, comm=None,
                  bags: int = 1) -> tuple[dict, np.ndarray]:
    """The reference rows of the "knn" scores and the training means of their neighbour distance and its square,
    and a boolean per training row marking the rows that are in the reference set.

    Up to ``rows`` training rows, drawn by ``seed`` (the same rows whether X is an array or
    a streamed source), in the network's scaled layout, flattened; the distances of the
    reference rows leave each row itself out. Data-parallel (``comm``), X is this rank's
    shard of the n rows: each rank contributes its reference rows, in row order, and the
    returned mask covers the shard. ``bags`` > 1: that many bags of ``rows`` rows each, drawn one after the
    other (:func:`reference_rows`), whose distances are averaged (:mod:`aelab.neighbours`).
    """
    ref, in_reference = reference_rows(X, to_net, n, seed, rows, comm, bags)
    bags = len(ref) // max(1, min(n, rows))
    d = knn_distance(torch.from_numpy(ref), torch.from_numpy(ref), k, exclude_self=True, bags=bags)
    return {"knn_ref": ref, "knn_k": int(k), "knn_bags": int(bags), "knn_mean": float(d.mean()),
            "knn_mean_sq": float(d.square().mean())}, in_reference


def reference_rows(X, to_net, n: int, seed: int, rows: int, comm=None, bags: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``rows`` training rows drawn by ``seed``, in the network's layout, flattened (float32; all ranks'
    rows, in row order), and a boolean per row of this rank's shard marking the drawn rows.

    ``bags`` > 1 (and more than ``rows`` rows): that many draws of ``rows`` rows each, one after the other
    from the same generator (a row may be in several), returned bag after bag, each in row order;
    the mask marks the rows in any bag. The rows are read once, whatever the number of bags."""
    from .comm import Comm

    comm = comm or Comm()
    rng = np.random.default_rng(seed)
    draws = [np.sort(rng.permutation(n)[:rows]) for _ in range(bags)] if n > rows else [np.arange(n)]
    pick = np.unique(np.concatenate(draws))
    in_reference = np.zeros(n, dtype=bool)
    in_reference[pick] = True
    start, stop = comm.shard(n)
    in_reference = in_reference[start:stop]
    if is_source(X):
        parts = [to_net(check_array(c, name="a chunk of X", dtype=None)) for c in X.iter_masked_chunks(in_reference)]
        ref = np.concatenate(parts) if parts else to_net(X.read(0, 0))
    else:
        ref = to_net(X[np.flatnonzero(in_reference)])
    ref = comm.concat(np.ascontiguousarray(ref.reshape(len(ref), -1), dtype=np.float32))
    if len(draws) > 1:  # the union, read in row order, back into the bags
        ref = np.ascontiguousarray(ref[np.searchsorted(pick, np.concatenate(draws))])
    return ref, in_reference
