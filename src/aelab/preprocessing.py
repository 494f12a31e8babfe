"""Scaling fitted on the training data (saved with the model) and input corruption.

``Scaler`` maps user units to the network's units and back; its state is a few
arrays saved beside the weights. ``corrupt`` draws the noise of a denoising
autoencoder, afresh for every batch.
"""

from __future__ import annotations

import numpy as np
import torch

from .exceptions import ConfigError

SCALERS = ("auto", "standard", "minmax", "scale", "pixel", "none")  # "scale": divide by the root mean square (0 stays 0)
#: What each sample goes through before the affine scaling (``intensity=`` of the estimators): "sum" divides
#: a sample by its total; "sqrt" and "log1p" compress the range (odd functions, so the sign is kept).
INTENSITY = ("auto", "none", "sum", "sqrt", "log1p", "sum+sqrt", "sum+log1p")
#: "pixel" scaler: ``(x_j - mean_j) / (std_j + PIXEL_FLOOR * mean_k std_k)``: per-pixel standardisation whose
#: divisor never falls below a fraction of the typical pixel spread, so pixels that are almost always empty
#: (std near 0) are not blown up by the rare sample that lights them (benchmarks/jets.py).
PIXEL_FLOOR = 0.1

#: Rows per step when statistics are taken over an in-memory array (bounded float64 copies).
_STATS_BYTES = 8 * 2**20


class RunningStats:
    """Per-column count, mean, sum of squared deviations, min and max, merged chunk by chunk.

    Chunks are merged with the pairwise update of Chan, Golub and LeVeque (1979), which is
    stable where ``E[x^2] - E[x]^2`` is not (large offsets, float32 inputs). The same
    object decides the layout (dtype, value range, whole numbers) and fits the scaler, so
    an array in memory and the same rows streamed from a file give the same decisions.
    """

    def __init__(self, covariance: bool = False):
        self.covariance = covariance  # m2 holds the full scatter matrix (d, d) instead of its diagonal
        self.n = 0
        self.mean = self.m2 = self.lo = self.hi = None
        self.integral = True          # every value a whole number
        self.dtype: np.dtype | None = None

    def update(self, X) -> "RunningStats":
        X = np.asarray(X)
        if X.shape[0] == 0:
            return self
        x = X.reshape(X.shape[0], -1).astype(np.float64)
        chunk = RunningStats(self.covariance)
        chunk.dtype, chunk.n, chunk.mean = X.dtype, x.shape[0], x.mean(axis=0)
        # whole numbers: checked only while every earlier value was one (one pass saved per chunk after)
        chunk.integral = X.dtype.kind in "uib" or (self.integral and bool(np.array_equal(x, np.round(x))))
        dev = x - chunk.mean
        chunk.m2 = dev.T @ dev if self.covariance else np.square(dev).sum(axis=0)
        chunk.lo, chunk.hi = x.min(axis=0), x.max(axis=0)
        return self.merge(chunk)

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Add the rows summarised by ``other`` (another chunk, or another process's shard)."""
        if other.n == 0:
            return self
        if self.dtype is None or other.dtype is None:
            self.dtype = self.dtype if other.dtype is None else other.dtype
        elif other.dtype != self.dtype:
            self.dtype = np.result_type(self.dtype, other.dtype)
        self.integral = self.integral and other.integral
        if self.n == 0:
            self.n, self.mean, self.m2, self.lo, self.hi = other.n, other.mean, other.m2, other.lo, other.hi
            return self
        m, n = other.n, self.n + other.n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (m / n)
        cross = np.outer(delta, delta) if self.covariance else np.square(delta)
        self.m2 = self.m2 + other.m2 + cross * (self.n * m / n)
        self.lo, self.hi = np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi)
        self.n = n
        return self

    @classmethod
    def of(cls, X) -> "RunningStats":
        """Statistics of an in-memory array, taken in bounded slices of rows."""
        X = np.asarray(X)
        st = cls()
        step = max(1, _STATS_BYTES // max(1, 8 * int(np.prod(X.shape[1:], dtype=np.int64))))
        for i in range(0, X.shape[0], step):
            st.update(X[i : i + step])
        return st

    # ---- summaries
    @property
    def min(self) -> float:
        return float(self.lo.min())

    @property
    def max(self) -> float:
        return float(self.hi.max())

    def pooled(self) -> tuple[float, float]:
        """Mean and (population) variance of all values together (every column merged)."""
        mean = float(self.mean.mean())
        m2 = float(self.m2.sum() + self.n * np.square(self.mean - mean).sum())
        return mean, m2 / (self.n * self.mean.size)


def pre_transform(X: np.ndarray, pre: str) -> np.ndarray:
    """``X`` (n, ...) through the per-sample steps ``pre`` (see :data:`INTENSITY`), in float64.

    "sum": each sample divided by its total (a sample whose total is 0 stays 0); then "sqrt"
    ``sign(x) sqrt(|x|)`` or "log1p" ``sign(x) log(1 + |x|)``. The arithmetic is
    :func:`aelab.preprocess.apply_steps`'s, the one the scaler and the ONNX graph run.
    """
    from .preprocess import apply_steps, as_tensor

    X = np.asarray(X, dtype=np.float64)
    return X if pre == "none" else apply_steps(as_tensor(X), pre).numpy()


def resolve_intensity(intensity: str, intensity_images: bool) -> str:
    """``intensity="auto"``: :data:`DEFAULT_INTENSITY` for intensity images (non-negative images whose values
    are not 0..255 or 0..1 pixels, such as jet images), "none" for everything else."""
    if intensity not in INTENSITY:
        raise ConfigError(f"intensity={intensity!r} is not known; expected one of {INTENSITY}.")
    if intensity != "auto":
        return intensity
    return DEFAULT_INTENSITY if intensity_images else "none"


#: ``intensity="auto"`` and ``scaler="auto"`` for intensity images (measured in both directions of
#: benchmarks/jets.py; see docs/physics.md). The range compressed, each image's own scale kept: the default
#: score ("emission+spectrum") reads each pixel's intensity back from the network input, which a division by
#: the image's total would lose. "sum+sqrt" (each image over its total first) gives the network's own
#: reconstruction scores their best balance between the two directions, and stays an option.
DEFAULT_INTENSITY = "sqrt"
DEFAULT_INTENSITY_SCALER = "pixel"


def resolve_scaler(kind: str, image: bool, stats: RunningStats, intensity_images: bool = False) -> tuple[str, bool]:
    """Decide the concrete scaler for ``kind``, the layout (``image``) and the data's statistics.

    Returns ``(kind, per_feature)``. Images are scaled with one global offset and scale
    (pixels share units), tables per column. "auto": images get min-max to [0, 1]; tables
    get a per-column min-max when they come as uint8 or all their values lie in [0, 1],
    and are standardised per column otherwise; intensity images (``intensity_images``:
    non-negative images that are not pixels, such as jet images) get
    :data:`DEFAULT_INTENSITY_SCALER`. "pixel" is always per pixel.
    """
    if kind not in SCALERS:
        raise ConfigError(f"scaler={kind!r} is not known; expected one of {SCALERS}.")
    if kind != "auto":
        return kind, kind == "pixel" or not image
    if image and intensity_images:
        return DEFAULT_INTENSITY_SCALER, DEFAULT_INTENSITY_SCALER == "pixel" or not image
    if image:
        return "minmax", False
    in_unit = stats.dtype == np.uint8 or (stats.min >= 0 and stats.max <= 1)
    return ("minmax" if in_unit else "standard"), True


class Scaler:
    """Per-sample steps ``pre`` (see :func:`pre_transform`) and then the affine scaling ``(x - offset) / scale``;
    constant features get scale 1 (no NaN)."""

    def __init__(self, kind: str = "none", per_feature: bool = True, pre: str = "none"):
        self.kind, self.per_feature, self.pre = kind, per_feature, pre
        self.offset: np.ndarray = np.zeros(1, np.float32)
        self.scale: np.ndarray = np.ones(1, np.float32)
        self._module = None  # the Preprocess module of offset and scale, built on first use

    def fit(self, X: np.ndarray) -> "Scaler":
        return self.fit_stats(RunningStats.of(X))

    def fit_stats(self, stats: RunningStats) -> "Scaler":
        """Offset and scale from :class:`RunningStats` of the training rows."""
        if self.per_feature:
            mean, var, lo, hi = stats.mean, stats.m2 / stats.n, stats.lo, stats.hi
        else:
            mean, var = stats.pooled()
            lo, hi = stats.min, stats.max
        if self.kind == "standard":
            offset, scale = mean, np.sqrt(np.maximum(var, 0.0))
        elif self.kind == "pixel":
            std = np.sqrt(np.maximum(var, 0.0))
            offset, scale = mean, std + PIXEL_FLOOR * float(np.mean(std))
        elif self.kind == "minmax":
            offset, scale = lo, np.asarray(hi) - np.asarray(lo)
        elif self.kind == "scale":
            offset, scale = np.zeros_like(np.asarray(mean, np.float64)), np.sqrt(np.maximum(var, 0.0) + np.square(mean))
        else:
            offset, scale = np.zeros_like(np.asarray(lo, np.float64)), np.ones_like(np.asarray(lo, np.float64))
        offset, scale = np.asarray(offset, np.float64), np.asarray(scale, np.float64)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(offset)), scale, 1.0)
        self.offset = np.atleast_1d(offset)
        self.scale = np.atleast_1d(scale)
        self._module = None
        return self

    def module(self):
        """This scaler as a :class:`~aelab.preprocess.Preprocess` module (no layout), built once per fit."""
        from .preprocess import Preprocess

        if self._module is None:
            self._module = Preprocess(self)
        return self._module

    @torch.no_grad()
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scale ``X`` (n, ...) to float32; per-column offsets apply to the flattened row.

        float64 input is scaled in float64 before the cast, so large offsets (say values
        around 1e7 that vary by 1) keep their digits. The arithmetic is :class:`~aelab.preprocess.Preprocess`'s.
        """
        from .preprocess import as_tensor

        return self.module().scale_rows(as_tensor(X)).numpy()

    @torch.no_grad()
    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        from .preprocess import as_tensor

        return self.module().unscale_rows(as_tensor(np.asarray(X, np.float32))).numpy()

    def state(self) -> dict:
        return {"offset": self.offset, "scale": self.scale}

    def config(self) -> dict:
        return {"kind": self.kind, "per_feature": self.per_feature, "pre": self.pre}

    def fit_data(self, data, stats: RunningStats, comm=None) -> "Scaler":
        """Fit on ``data`` (array or chunked source; this rank's rows under ``comm``) whose raw statistics are
        ``stats``: with per-sample steps the statistics are taken again, of the transformed rows."""
        if self.pre == "none":
            return self.fit_stats(stats)
        from ._validation import is_source

        st = RunningStats()
        if is_source(data):
            chunks = data.iter_chunks()
        else:
            step = max(1, _STATS_BYTES // max(1, 8 * int(np.prod(data.shape[1:], dtype=np.int64))))
            chunks = (data[i : i + step] for i in range(0, data.shape[0], step))
        for chunk in chunks:
            st.update(pre_transform(chunk, self.pre))
        st.dtype = np.dtype(np.float64)
        return self.fit_stats(comm.merge(st) if comm is not None else st)

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "Scaler":
        sc = cls(config["kind"], config["per_feature"], config.get("pre", "none"))  # folders before 0.3: no "pre"
        sc.offset = np.asarray(state["offset"], np.float64)
        sc.scale = np.asarray(state["scale"], np.float64)
        return sc


NOISE_TYPES = ("gaussian", "mask")


def corrupt(x: torch.Tensor, noise: float, noise_type: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a corrupted copy x~ of ``x`` for denoising training.

    "gaussian": add N(0, noise^2) in scaled units; "mask": zero each value with
    probability ``noise``.
    """
    if noise <= 0:
        return x
    if noise_type == "gaussian":
        return x + noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if noise_type == "mask":
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= noise
        return x * keep
    raise ConfigError(f"noise_type={noise_type!r} is not known; expected one of {NOISE_TYPES}.")
