"""Scaling fitted on the training data (saved with the model) and input corruption.

``Scaler`` maps user units to the network's units and back; its state is a few
arrays saved beside the weights. ``corrupt`` draws the noise of a denoising
autoencoder, afresh for every batch.
"""

from __future__ import annotations

import numpy as np
import torch

from .exceptions import ConfigError

SCALERS = ("auto", "standard", "minmax", "none")


def resolve_scaler(kind: str, X: np.ndarray) -> tuple[str, bool]:
    """Decide the concrete scaler for ``kind`` and data ``X``.

    Returns ``(kind, per_feature)``. "auto": images (ndim >= 3) get one global min-max to
    [0, 1]; tables whose values all lie in [0, 1] or come as uint8 get a per-feature
    min-max; other tables are standardised per feature.
    """
    if kind not in SCALERS:
        raise ConfigError(f"scaler={kind!r} is not known; expected one of {SCALERS}.")
    images = X.ndim >= 3
    if kind != "auto":
        return kind, not images
    if images:
        return "minmax", False
    return ("minmax" if X.dtype == np.uint8 or (X.min() >= 0 and X.max() <= 1) else "standard"), True


class Scaler:
    """Affine scaling ``(x - offset) / scale``; constant features get scale 1 (no NaN)."""

    def __init__(self, kind: str = "none", per_feature: bool = True):
        self.kind, self.per_feature = kind, per_feature
        self.offset: np.ndarray = np.zeros(1, np.float32)
        self.scale: np.ndarray = np.ones(1, np.float32)

    # streaming statistics: fit_partial on chunks, then finalize
    def fit(self, X: np.ndarray) -> "Scaler":
        return self.partial_fit(X).finalize()

    def partial_fit(self, X: np.ndarray) -> "Scaler":
        X = np.asarray(X, dtype=np.float64)
        axis = 0 if self.per_feature else None
        st = getattr(self, "_stats", None)
        n = X.shape[0] if self.per_feature else X.size
        s, ss = X.sum(axis=axis), np.square(X).sum(axis=axis)
        lo, hi = X.min(axis=axis), X.max(axis=axis)
        if st is None:
            self._stats = [n, s, ss, lo, hi]
        else:
            st[0] += n; st[1] = st[1] + s; st[2] = st[2] + ss
            st[3] = np.minimum(st[3], lo); st[4] = np.maximum(st[4], hi)
        return self

    def finalize(self) -> "Scaler":
        n, s, ss, lo, hi = self._stats
        del self._stats
        if self.kind == "standard":
            mean = s / n
            std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
            offset, scale = mean, std
        elif self.kind == "minmax":
            offset, scale = lo, hi - lo
        else:
            offset, scale = np.zeros_like(lo), np.ones_like(lo)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(offset)), scale, 1.0)
        self.offset = np.atleast_1d(np.asarray(offset, np.float32))
        self.scale = np.atleast_1d(np.asarray(scale, np.float32))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.offset) / self.scale).astype(np.float32, copy=False)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float32) * self.scale + self.offset

    def state(self) -> dict:
        return {"offset": self.offset, "scale": self.scale}

    def config(self) -> dict:
        return {"kind": self.kind, "per_feature": self.per_feature}

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "Scaler":
        sc = cls(config["kind"], config["per_feature"])
        sc.offset = np.asarray(state["offset"], np.float32)
        sc.scale = np.asarray(state["scale"], np.float32)
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
