"""The one rule for "table or image", and moving arrays to and from the network's layout.

**The rule** (``input_kind="auto"``): a 2-D array (n, d) is a table; a 4-D array is a
batch of images, channels first (n, c, h, w) or last (n, h, w, c); a 3-D array
(n, a, b) is a batch of greyscale images when its values look like pixel
intensities (uint8 or bool, all values in [0, 1], or whole numbers in [0, 255]) and
a *table of objects* otherwise, such as collider events (n, objects, features) of
(pT, eta, phi). A table of objects is scaled per column (every object-feature pair
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

__all__ = ["INPUT_KINDS", "Layout", "resolve_layout", "looks_like_pixels"]

INPUT_KINDS = ("auto", "table", "image")

log = logging.getLogger("aelab")


def looks_like_pixels(dtype, lo: float, hi: float, integral: bool) -> bool:
    """uint8 or bool, every value in [0, 1], or whole numbers in [0, 255]."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8 or dtype == np.bool_:
        return True
    if lo >= 0 and hi <= 1:
        return True
    return bool(integral and lo >= 0 and hi <= 255)


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
        kind = "image" if pixels else "table"
        log.info("input_kind='auto' read X of shape %s (dtype %s, values in [%.4g, %.4g]) as %s",
                 tuple(shape), stats.dtype, stats.min, stats.max,
                 "greyscale images" if pixels else "a table of objects (n, objects, features), scaled per column")
    channels_last = bool(kind == "image" and ndim == 4 and sample[0] not in (1, 3, 4) and sample[-1] in (1, 3, 4))
    return Layout(kind, sample, channels_last)
