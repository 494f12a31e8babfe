"""The neighbour distance of the "knn" scores: the mean distance to the k nearest reference rows, in bags.

The reference rows (scaled training rows, flattened) come in ``bags`` equal bags, each drawn on its
own from the training rows (:func:`aelab.fitted.reference_rows`). The distance of a row is the
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

import torch

__all__ = ["knn_distance", "knn_indices", "EXACT_BLOCK"]

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
    v, i = part.reshape(part.shape[0], bags, size).topk(min(k, size), dim=2, largest=False)
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
    d = d2.reshape(d2.shape[0], bags, kk).sort(dim=2).values.sqrt()   # (rows, bags, kk)
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
