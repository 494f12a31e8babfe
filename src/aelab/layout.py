"""The one rule for "table or image", and moving arrays to and from the network's layout.

**The rule** (``input_kind="auto"``): a 2-D array (n, d) is a table; a 4-D array is a
batch of images, channels first (n, c, h, w) or last (n, h, w, c); a 3-D array
(n, a, b) is a batch of greyscale images when its values look like pixel
intensities (uint8 or bool, all values in [0, 1], or whole numbers in [0, 255]) or
when they are *intensity images*: all values non-negative on a grid whose two sides are
both at least :data:`MIN_IMAGE_SIDE` (8), such as calorimeter or Lund-plane jet images
(n, 40, 40) of transverse momenta. Anything else is a *table of objects*, such as
collider events (n, objects, features) of (pT, eta, phi): a list of objects has a
handful of features each (3 or 4, fewer than 8) and signed coordinates (eta, phi, px).
A table of objects is scaled per column (every object-feature pair
is a column), gets the dense network and the table score, exactly as the same rows
flattened to (n, a * b) would. ``input_kind="table"`` or ``"image"`` overrules the rule.

Every consumer (the scaler, the network builder, the default score, plots, the
report and the command line) asks :func:`resolve_layout` or reads the fitted
:class:`Layout`; nothing else looks at ``ndim``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .exceptions import ConfigError, DataError

__all__ = ["INPUT_KINDS", "MIN_IMAGE_SIDE", "Layout", "resolve_layout", "looks_like_pixels", "looks_like_intensity_image",
           "intensity_images"]

INPUT_KINDS = ("auto", "table", "image")

#: A 3-D array of non-negative values is read as intensity images when both sides of a sample are at least this.
MIN_IMAGE_SIDE = 8

log = logging.getLogger("aelab")


def looks_like_pixels(dtype, lo: float, hi: float, integral: bool) -> bool:
    """uint8 or bool, every value in [0, 1], or whole numbers in [0, 255]."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8 or dtype == np.bool_:
        return True
    if lo >= 0 and hi <= 1:
        return True
    return bool(integral and lo >= 0 and hi <= 255)


def looks_like_intensity_image(sample_shape: tuple, lo: float) -> bool:
    """Non-negative values on a grid (a, b) with both sides at least :data:`MIN_IMAGE_SIDE`."""
    return bool(len(sample_shape) == 2 and min(sample_shape) >= MIN_IMAGE_SIDE and lo >= 0)


@dataclass(frozen=True)
class Layout:
    """How one sample looks to the user and to the network.

    ``kind``: "table" or "image"; ``input_shape``: the per-sample shape the user passes;
    ``channels_last``: images given as (n, h, w, c).
    """

    kind: str
    input_shape: tuple
    channels_last: bool = False

    @property
    def image(self) -> bool:
        return self.kind == "image"

    @property
    def n_features(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(c, h, w) for images, None for tables."""
        if not self.image:
            return None
        s = self.input_shape
        if len(s) == 2:
            return (1, *s)
        return (s[2], s[0], s[1]) if self.channels_last else tuple(s)

    def to_net(self, Xs: np.ndarray, net_shape: tuple) -> np.ndarray:
        """Scaled rows in the user's layout -> contiguous network input (n, *net_shape)."""
        if self.channels_last:
            Xs = np.moveaxis(Xs, -1, 1)
        return np.ascontiguousarray(Xs.reshape(Xs.shape[0], *net_shape))

    def from_net(self, Xs: np.ndarray) -> np.ndarray:
        """Network-layout rows -> the user's per-sample shape (still scaled)."""
        n = Xs.shape[0]
        if self.channels_last:
            c, h, w = self.image_shape
            Xs = np.moveaxis(Xs.reshape(n, c, h, w), 1, -1)
        return Xs.reshape(n, *self.input_shape)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "input_shape": list(self.input_shape), "channels_last": self.channels_last}

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        return cls(str(d["kind"]), tuple(int(v) for v in d["input_shape"]), bool(d["channels_last"]))


def intensity_images(layout: Layout, stats) -> bool:
    """Images (by the rule or by ``input_kind``) whose values are non-negative but not pixels: jet images and
    other maps of an intensity (energy, transverse momentum), which get their own preprocessing and score."""
    return bool(layout.image and stats.min >= 0
                and not looks_like_pixels(stats.dtype, stats.min, stats.max, stats.integral))


def resolve_layout(input_kind: str, shape: tuple, stats) -> Layout:
    """Apply the rule to an array of full ``shape`` whose values have :class:`RunningStats` ``stats``."""
    if input_kind not in INPUT_KINDS:
        raise ConfigError(f"input_kind={input_kind!r} is not known; expected one of {INPUT_KINDS}.")
    sample = tuple(int(s) for s in shape[1:])
    ndim = len(shape)
    if ndim == 2:
        if input_kind == "image":
            raise DataError(f"input_kind='image' needs images (n, h, w) or (n, c, h, w), but X has shape "
                            f"{tuple(shape)}. Reshape the rows first, e.g. X.reshape(len(X), 28, 28).")
        return Layout("table", sample)
    if input_kind == "table":
        kind = "table"
    elif input_kind == "image" or ndim == 4:
        kind = "image"
    else:
        pixels = looks_like_pixels(stats.dtype, stats.min, stats.max, stats.integral)
        intensity = not pixels and looks_like_intensity_image(sample, stats.min)
        kind = "image" if pixels or intensity else "table"
        what = ("greyscale images" if pixels else
                f"intensity images (non-negative values on a grid of at least {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE}, "
                "such as jet images)" if intensity else
                f"a table of objects (n, objects, features), scaled per column (not images: negative values, or "
                f"a side under {MIN_IMAGE_SIDE})")
        log.info("input_kind='auto' read X of shape %s (dtype %s, values in [%.4g, %.4g]) as %s",
                 tuple(shape), stats.dtype, stats.min, stats.max, what)
    channels_last = bool(kind == "image" and ndim == 4 and sample[0] not in (1, 3, 4) and sample[-1] in (1, 3, 4))
    return Layout(kind, sample, channels_last)
