"""Functions from arrays to matplotlib Figures.

Every function returns a :class:`matplotlib.figure.Figure` built directly (no
pyplot, no global state, nothing is shown): save it with ``fig.savefig(path)``
or embed it in a report with :func:`aelab.report.write_report`.

Image arguments may be ``(n, h, w)``, ``(n, 1, h, w)``, ``(n, 3, h, w)`` or
flat ``(n, h*w)`` rows of square images. Needs the ``plots`` extra
(``pip install 'aelab[plots]'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .exceptions import DataError, require

__all__ = [
    "as_images",
    "image_rows",
    "reconstruction_grid",
    "image_grid",
    "interpolation_strip",
    "latent_manifold",
    "latent_scatter",
    "histograms",
    "score_histogram",
    "roc_curves",
    "training_curves",
    "line_plot",
    "attribution_rows",
]


def _figure(width: float, height: float):
    require("matplotlib", "plots", "Plotting")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def as_images(X: Any) -> np.ndarray | None:
    """Return ``X`` as ``(n, h, w)`` grey or ``(n, h, w, 3)`` colour images, or None if it is not images."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2:
        side = math.isqrt(X.shape[1])
        return X.reshape(-1, side, side) if side >= 4 and side * side == X.shape[1] else None
    if X.ndim == 3:
        return X
    if X.ndim == 4 and X.shape[1] in (1, 3):
        return X[:, 0] if X.shape[1] == 1 else X.transpose(0, 2, 3, 1)
    if X.ndim == 4 and X.shape[-1] in (1, 3):  # channels last
        return X[..., 0] if X.shape[-1] == 1 else X
    return None


def _images(X: Any, name: str) -> np.ndarray:
    images = as_images(X)
    if images is None:
        raise DataError(
            f"{name} with shape {np.shape(X)} is not a batch of images; expected (n, h, w), "
            "(n, 1|3, h, w) or (n, h*w) with square images."
        )
    return images


def _mosaic(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile ``images`` (n, h, w[, 3]) into one array with ``ncols`` columns, NaN between tiles."""
    n, h, w = images.shape[:3]
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, *images.shape[3:]), np.nan, np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return out


def _show(ax, mosaic: np.ndarray, vmin: float, vmax: float, title: str | None = None) -> None:
    if mosaic.ndim == 3:  # colour: scale to [0, 1] for imshow
        mosaic = np.clip((mosaic - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    ax.imshow(mosaic, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def image_rows(rows: Mapping[str, Any], n: int = 10, title: str | None = None):
    """One titled row per named batch of images, the first ``n`` of each (originals, noisy, reconstructions...).

    All rows share the first row's grey scale, so differences in brightness are visible.
    """
    batches = {name: _images(images, name)[:n] for name, images in rows.items()}
    if not batches:
        raise DataError("image_rows needs at least one row of images.")
    first = next(iter(batches.values()))
    for name, b in batches.items():
        if b.shape != first.shape:
            raise DataError(f"row {name!r} has images of shape {b.shape}, but the first row has {first.shape}; "
                            "all rows need the same shape.")
    vmin, vmax = float(np.nanmin(first)), float(np.nanmax(first))
    fig = _figure(0.9 * len(first) + 0.5, 1.25 * len(batches) + (0.4 if title else 0.1))
    axes = np.atleast_1d(fig.subplots(len(batches), 1))
    for ax, (name, b) in zip(axes, batches.items()):
        _show(ax, _mosaic(b, len(b)), vmin, vmax, name)
    if title:
        fig.suptitle(title)
    return fig


def reconstruction_grid(originals: Any, reconstructions: Any, n: int = 10, title: str | None = None):
    """Originals (top row) above their reconstructions (bottom row), the first ``n`` of each."""
    return image_rows({"original": originals, "reconstruction": reconstructions}, n=n, title=title)


def image_grid(images: Any, ncols: int | None = None, title: str | None = None):
    """All ``images`` tiled in one grid (generated samples, noisy inputs, ...)."""
    imgs = _images(images, "images")
    ncols = ncols or min(len(imgs), math.ceil(math.sqrt(len(imgs))))
    nrows = -(-len(imgs) // ncols)
    fig = _figure(0.6 * ncols + 0.4, 0.6 * nrows + (0.6 if title else 0.2))
    ax = fig.subplots()
    _show(ax, _mosaic(imgs, ncols), float(imgs.min()), float(imgs.max()), title)
    return fig


def interpolation_strip(images: Any, steps: int | None = None, title: str | None = None):
    """Interpolations as rows of ``steps`` images each, start to end (default: one row of all images)."""
    imgs = _images(images, "images")
    steps = steps or len(imgs)
    if len(imgs) % steps:
        raise DataError(f"{len(imgs)} images do not split into rows of {steps} steps.")
    return image_grid(imgs, ncols=steps, title=title)


def latent_manifold(images: Any, grid: Sequence[float], title: str | None = "2-D latent manifold"):
    """Decoded images on a square grid of latent points (z1 across, z2 up).

    ``images`` holds ``len(grid)**2`` images in row-major order of ``(z2, z1)``
    with z2 descending (the top row is the largest z2), as
    ``[decode(z1, z2) for z2 in grid[::-1] for z1 in grid]``.
    """
    grid = np.asarray(grid, dtype=float)
    imgs = _images(images, "images")
    m = len(grid)
    if len(imgs) != m * m:
        raise DataError(f"expected {m}x{m}={m * m} images for a grid of {m} values, got {len(imgs)}.")
    h, w = imgs.shape[1:3]
    fig = _figure(6.0, 6.3)
    ax = fig.subplots()
    _show(ax, _mosaic(imgs, m), float(imgs.min()), float(imgs.max()), title)
    step = max(1, m // 6)
    idx = np.arange(0, m, step)
    ax.set_xticks(idx * (w + 1) + w / 2, [f"{v:.2g}" for v in grid[idx]])
    ax.set_yticks(idx * (h + 1) + h / 2, [f"{v:.2g}" for v in grid[::-1][idx]])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    return fig


def _project_2d(Z: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Codes as 2 columns: themselves when 1-2 wide, else their first two principal components."""
    if Z.shape[1] == 1:
        return np.column_stack([Z[:, 0], np.arange(len(Z))]), ("z1", "sample index")
    if Z.shape[1] == 2:
        return Z, ("z1", "z2")
    centred = Z - Z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, ("PC 1 of z", "PC 2 of z")


def latent_scatter(Z: Any, labels: Any = None, *, max_points: int = 5000, title: str | None = None, random_state: int = 0):
    """Latent codes as points, one colour per label; codes wider than 2 are shown on their first 2 PCs."""
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or len(Z) == 0:
        raise DataError(f"Z must be a non-empty (n, latent_dim) array, got shape {Z.shape}.")
    if labels is not None and len(labels) != len(Z):
        raise DataError(f"labels has {len(labels)} entries but Z has {len(Z)} rows; pass one label per code.")
    keep = np.random.default_rng(random_state).permutation(len(Z))[:max_points]
    points, (xlabel, ylabel) = _project_2d(Z)
    points = points[keep]
    fig = _figure(6.0, 5.0)
    ax = fig.subplots()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.6)
    else:
        lab = np.asarray(labels)[keep]
        for value in np.unique(lab):
            sel = lab == value
            ax.scatter(points[sel, 0], points[sel, 1], s=6, alpha=0.6, label=str(value))
        ax.legend(markerscale=3, fontsize=8, loc="best", title="label")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "latent space")
    return fig


def histograms(
    values: Mapping[str, Any],
    *,
    bins: int = 50,
    log: bool = True,
    threshold: float | None = None,
    xlabel: str = "value",
    title: str | None = None,
):
    """One step histogram per named array, on shared bins; a log y axis by default."""
    arrays = {str(k): np.asarray(v, dtype=float).ravel() for k, v in values.items()}
    if not arrays or not any(a.size for a in arrays.values()):
        raise DataError("histograms needs at least one non-empty array.")
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=bins)
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    for name, a in arrays.items():
        ax.hist(a, bins=edges, histtype="step", linewidth=1.5, label=f"{name} (n={a.size})")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.3g}")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def score_histogram(
    scores: Any,
    labels: Any = None,
    *,
    names: Mapping[Any, str] | None = None,
    threshold: float | None = None,
    bins: int = 50,
    title: str | None = None,
):
    """Anomaly scores as one histogram per class (log y axis); ``names`` maps a label to its legend name."""
    scores = np.asarray(scores, dtype=float).ravel()
    if labels is None:
        groups = {"all": scores}
    else:
        labels = np.asarray(labels).ravel()
        if len(labels) != len(scores):
            raise DataError(f"labels has {len(labels)} entries but scores has {len(scores)}; pass one label per score.")
        groups = {(names or {}).get(v.item(), f"class {v}"): scores[labels == v] for v in np.unique(labels)}
    return histograms(groups, bins=bins, threshold=threshold, xlabel="anomaly score", title=title or "score distribution")


def roc_curves(y_true: Any, scores: Any, *, rejection: bool = False, title: str | None = None):
    """ROC curves of one or more scores (a mapping name -> scores), with a logarithmic FPR axis.

    ``y_true`` is 1 for the anomalies (signal) and 0 for normal data (background).
    ``rejection=True`` draws the physics view instead: background rejection
    1/FPR (log axis) against signal efficiency (TPR). A dashed line marks a random
    guess. The legend gives each curve's ROC AUC.
    """
    from .metrics import roc_auc, roc_curve

    named = dict(scores) if isinstance(scores, Mapping) else {"score": scores}
    fig = _figure(6.0, 4.5)
    ax = fig.subplots()
    fpr_min = 1.0
    for name, s in named.items():
        fpr, tpr = roc_curve(y_true, s)[:2]
        fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        ok = fpr > 0  # log axis: FPR = 0 cannot be drawn
        fpr_min = min(fpr_min, fpr[ok].min(initial=1.0))
        label = f"{name} (AUC {roc_auc(y_true, s):.3f})"
        if rejection:
            ax.plot(tpr[ok], 1.0 / fpr[ok], label=label)
        else:
            ax.plot(fpr[ok], tpr[ok], label=label)
    eff = np.logspace(np.log10(fpr_min), 0, 100)
    if rejection:
        ax.plot(eff, 1.0 / eff, "k--", linewidth=0.8, label="random")
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency (TPR)")
        ax.set_ylabel("background rejection (1 / FPR)")
    else:
        ax.plot(eff, eff, "k--", linewidth=0.8, label="random")
        ax.set_xscale("log")
        ax.set_xlabel("false positive rate (log)")
        ax.set_ylabel("true positive rate")
        ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "ROC")
    return fig


def training_curves(history: Mapping[str, Sequence[float]], title: str | None = "training curves"):
    """One line per non-empty series of a ``history_`` dict (``loss``, ``val_loss``, ...) against epoch."""
    series = {k: np.asarray(v, dtype=float) for k, v in history.items() if len(v)}
    if not series:
        raise DataError("history has no recorded values; train the model (fit) before plotting its curves.")
    return line_plot(
        {k: (np.arange(1, len(v) + 1), v) for k, v in series.items()},
        xlabel="epoch",
        ylabel="loss",
        logy=all((v > 0).all() for v in series.values()),
        title=title,
    )


def line_plot(
    series: Mapping[str, tuple[Any, Any]],
    *,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
    annotate: Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
):
    """Named ``(x, y)`` series as lines with markers; ``annotate`` labels each point of a series."""
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    for name, (x, y) in series.items():
        ax.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), marker="o", markersize=3, label=str(name))
        for xi, yi, text in zip(x, y, (annotate or {}).get(name, ()), strict=False):
            ax.annotate(text, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if logx:
        ax.set_xscale("log")
        xs = sorted({float(v) for x, _ in series.values() for v in np.asarray(x, dtype=float).ravel() if v > 0})
        if len(xs) <= 12:  # label the measured values themselves, not powers of ten
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def attribution_rows(images: Any, reconstructions: Any, attributions: Any, n: int = 5, title: str | None = None):
    """Images (top), their reconstructions and attribution maps (bottom; red adds to the score, blue takes
    from it, one symmetric scale for all maps; colour images' maps summed over channels)."""
    imgs, recs = _images(images, "images")[:n], _images(reconstructions, "reconstructions")[:n]
    maps = np.asarray(attributions, dtype=np.float32)[:n]
    maps = _images(maps, "attributions")
    if maps.ndim == 4:
        maps = maps.sum(axis=-1)
    vmin, vmax = float(np.nanmin(imgs)), float(np.nanmax(imgs))
    m = float(np.nanmax(np.abs(maps))) or 1.0
    fig = _figure(0.9 * len(imgs) + 0.5, 3.75 + (0.4 if title else 0.1))
    axes = fig.subplots(3, 1)
    _show(axes[0], _mosaic(imgs, len(imgs)), vmin, vmax, "input")
    _show(axes[1], _mosaic(recs, len(recs)), vmin, vmax, "reconstruction")
    axes[2].imshow(_mosaic(maps, len(maps)), cmap="coolwarm", vmin=-m, vmax=m, interpolation="nearest")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_title("contribution to the score", fontsize=10)
    if title:
        fig.suptitle(title)
    return fig
