"""The densities of where images are lit, and how brightly: the arithmetic of the "emission" and "spectrum"
score heads (:class:`aelab.heads.Emission`, :class:`aelab.heads.Spectrum`), which the post-fit pass
(:func:`aelab.postfit.emission_density`) counts and the heads score under. numpy for the densities (counted
once at fit), torch for what runs per row (in Python and in the exported graph).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["emission_weights", "emission_log_density", "spectrum_log_density", "spectrum_bins", "spectrum_range",
           "EMISSION_BLUR", "EMISSION_LIT", "SPECTRUM_BINS", "SPECTRUM_BLUR", "SPECTRUM_TAIL", "SPECTRUM_MIN_WIDTH"]

EMISSION_BLUR = 0.05  # "emission": Gaussian blur of the occupancy map, sigma in units of the image side (2 px of 40)
EMISSION_LIT = 1e-5   # "emission": a pixel is lit when its intensity exceeds this share of the image's brightest
SPECTRUM_BINS = 12    # "spectrum": equal bins of log intensity over the range of the training emissions
SPECTRUM_BLUR = 1.0   # "spectrum": Gaussian blur along the intensity axis, sigma in bins (space: EMISSION_BLUR)
SPECTRUM_TAIL = 1e-3  # "spectrum": the bins span the training emissions' log intensities between these quantiles
SPECTRUM_MIN_WIDTH = 1e-3  # "spectrum": the narrowest bin, in log intensity (a 0.1% change of intensity)


def emission_weights(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, lit) of flattened intensities ``v`` (n, d), float64: each image's lit pixels (above
    :data:`EMISSION_LIT` of its brightest; what is below is float rounding of an empty pixel) weighted
    by their share of its total intensity; an image with nothing lit weighs every pixel alike."""
    v = v.to(torch.float64)
    top = v.amax(dim=1, keepdim=True)
    lit = (v > EMISSION_LIT * top) & (v > 0)
    w = torch.where(lit, v, torch.zeros_like(v))
    total = w.sum(dim=1, keepdim=True)
    uniform = torch.full_like(w, 1.0 / max(1, w.shape[1]))
    return torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), uniform), lit


def _blur_axis(a, axis: int, sigma: float):
    """Gaussian blur of numpy array ``a`` along ``axis`` (mirror edges, truncated at 4 sigma, as scipy.ndimage)."""
    r = int(4.0 * sigma + 0.5)
    if sigma <= 0 or r == 0:
        return a
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    ap = np.pad(a, pad, mode="symmetric")
    out = np.zeros_like(a, dtype=np.float64)
    for i, kv in enumerate(k):
        out += kv * np.take(ap, np.arange(i, i + a.shape[axis]), axis=axis)
    return out


def emission_log_density(lit_counts, n: int, grid_axes: tuple[int, int], shape: tuple) -> np.ndarray:
    """``-log p_j`` per pixel (flattened, float64) from the number of training images that light pixel j
    (``lit_counts``, flattened ``shape``) out of ``n``: ``p_j = (count_j + 0.5) / (n + 1)``, blurred by a
    Gaussian of :data:`EMISSION_BLUR` times the mean side of the grid (``grid_axes`` of ``shape``)."""
    p = ((np.asarray(lit_counts, np.float64) + 0.5) / (n + 1)).reshape(shape)
    sigma = EMISSION_BLUR * float(np.mean([shape[a] for a in grid_axes]))
    for a in grid_axes:
        p = _blur_axis(p, a, sigma)
    return -np.log(p.reshape(-1))


def spectrum_log_density(counts, n: int, grid_axes: tuple[int, int], shape: tuple) -> np.ndarray:
    """``-log p_jk`` (flattened pixels x (K + 2), float64) from the number of training images that light pixel j
    with a log intensity in bin k (``counts``, (prod(shape), K + 2): bin 0 below the range, bins 1..K its
    :data:`SPECTRUM_BINS` equal parts, bin K + 1 above it; the range holds all but the
    :data:`SPECTRUM_TAIL` of the training emissions at either end): ``p_jk = (count_jk + 0.5) / (n + 1)``,
    blurred in space as :func:`emission_log_density` and, within the range, by :data:`SPECTRUM_BLUR` bins
    along the intensity axis. Hardly any training emission lies outside the range, so an emission dimmer or
    brighter than (nearly) all seen gets about the floor ``0.5 / (n + 1)``, as a pixel never lit does in
    "emission"."""
    counts = np.asarray(counts, np.float64)
    p = ((counts + 0.5) / (n + 1)).reshape(*shape, counts.shape[-1])
    sigma = EMISSION_BLUR * float(np.mean([shape[a] for a in grid_axes]))
    for a in grid_axes:
        p = _blur_axis(p, a, sigma)
    p[..., 1:-1] = _blur_axis(p[..., 1:-1], p.ndim - 1, SPECTRUM_BLUR)
    return -np.log(p.reshape(-1, counts.shape[-1]))


def spectrum_bins(v: torch.Tensor, lo: torch.Tensor, width: torch.Tensor, k: int) -> torch.Tensor:
    """The intensity bin (int64) of every value of ``v`` (float64): ``1 + floor((log v - lo) / width)`` within
    the range (``k`` bins from ``lo``; its upper edge in the last), 0 below it, ``k + 1`` above it
    (a margin of 1e-6 bin either side, so that float rounding never moves a value on an edge out); NaN above."""
    t = (torch.log(v.clamp(min=1e-300)) - lo) / width
    t = torch.where(torch.isnan(t), torch.full_like(t, k + 1.0), t)
    inside = torch.clamp(torch.floor(t), 0, k - 1) + 1
    return torch.where(t < -1e-6, torch.zeros_like(t), torch.where(t > k + 1e-6, torch.full_like(t, k + 1), inside)
                       ).to(torch.int64)


def spectrum_range(fine: np.ndarray, lo: float, hi: float, k: int) -> tuple[float, float]:
    """(lower edge, width) of the "spectrum" bins from the histogram ``fine`` of the training emissions' log
    intensities over [lo, hi]: the range between the :data:`SPECTRUM_TAIL` quantiles (so that a
    few outlying training emissions do not stretch the bins of all the others), its ``k`` bins at least
    :data:`SPECTRUM_MIN_WIDTH` wide (centred on the range: a range of one repeated value,
    whose float rounding would otherwise be sliced into bins)."""
    if not np.isfinite(lo) or fine.sum() == 0:  # nothing lit anywhere
        return 0.0, 1.0
    edges = np.linspace(lo, hi, len(fine) + 1)
    cdf = np.cumsum(fine) / fine.sum()
    a = edges[int(np.searchsorted(cdf, SPECTRUM_TAIL, side="right"))]
    b = edges[int(np.searchsorted(cdf, 1.0 - SPECTRUM_TAIL, side="left")) + 1]
    width = (b - a) / k
    if width < SPECTRUM_MIN_WIDTH:
        width = SPECTRUM_MIN_WIDTH
        a = 0.5 * (a + b) - 0.5 * k * width
    return float(a), float(width)
