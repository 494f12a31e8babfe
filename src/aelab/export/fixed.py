"""Fixed-point types: ``ap_fixed<W,I>`` as hls4ml and the Xilinx ap_types headers define it, and the one
:class:`Precision` object (data type, weight type, accumulators) that every fixed-point function takes.

A value is cast to ``ap_fixed<W,I>`` by its quantisation mode (default ``AP_TRN``: toward minus
infinity, to a multiple of the LSB ``2**(I-W)``) and then its overflow mode (default ``AP_WRAP``:
two's-complement wrap-around); ``AP_RND``, ``AP_RND_CONV``, ``AP_TRN_ZERO`` and ``AP_SAT``,
``AP_SAT_SYM`` are understood too. Weights and biases are rounded to the nearest value of their
type and saturated, offline (:func:`round_weights`; hls4ml would truncate them).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import torch

from ..exceptions import ConfigError

__all__ = ["FixedPoint", "Precision", "parse_precision", "round_weights", "cast_weights", "ROUNDING", "OVERFLOW",
           "ACCUM"]

ROUNDING = ("TRN", "TRN_ZERO", "RND", "RND_CONV", "RND_ZERO", "RND_INF", "RND_MIN_INF")
OVERFLOW = ("WRAP", "SAT", "SAT_SYM", "SAT_ZERO")
ACCUM = ("auto", "same")
_PRECISION = re.compile(r"^\s*(?:ap_)?(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(?:AP_)?(\w+)\s*)?"
                        r"(?:,\s*(?:AP_)?(\w+)\s*)?(?:,\s*\d+\s*)?>\s*$", re.I)


@dataclass(frozen=True)
class FixedPoint:
    """``ap_fixed<width, integer, AP_<rounding>, AP_<overflow>>``: ``integer`` bits (sign included) before the
    binary point, ``width - integer`` after it; ``signed=False`` is ``ap_ufixed``."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self):
        if not 1 <= self.width <= 64:
            raise ConfigError(f"a fixed-point width must be 1 to 64 bits, got {self.width} in {self}.")
        if self.rounding not in ROUNDING or self.overflow not in OVERFLOW:
            raise ConfigError(f"{self}: rounding must be one of {ROUNDING} and overflow one of {OVERFLOW}.")

    @property
    def lsb(self) -> float:
        return 2.0 ** (self.integer - self.width)

    @property
    def range(self) -> tuple[float, float]:
        """Smallest and largest representable values."""
        lo = -(2 ** (self.width - 1)) if self.signed else 0
        hi = 2 ** (self.width - 1) - 1 if self.signed else 2**self.width - 1
        return lo * self.lsb, hi * self.lsb

    def __str__(self) -> str:
        modes = "" if (self.rounding, self.overflow) == ("TRN", "WRAP") else f",AP_{self.rounding},AP_{self.overflow}"
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}{modes}>"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Cast ``x`` (float64 is exact up to 53 bits) to this type, as the ap_fixed constructor does."""
        v = x.double() / self.lsb
        r = self.rounding
        if r == "TRN":
            q = torch.floor(v)
        elif r == "TRN_ZERO":
            q = torch.trunc(v)
        elif r == "RND":
            q = torch.floor(v + 0.5)
        elif r == "RND_CONV":
            q = torch.round(v)
        elif r == "RND_ZERO":
            q = torch.where(v >= 0, torch.ceil(v - 0.5), torch.floor(v + 0.5))
        elif r == "RND_MIN_INF":
            q = torch.ceil(v - 0.5)
        else:  # RND_INF
            q = torch.where(v >= 0, torch.floor(v + 0.5), torch.ceil(v - 0.5))
        lo, hi = (-(2 ** (self.width - 1)), 2 ** (self.width - 1) - 1) if self.signed else (0, 2**self.width - 1)
        if self.overflow == "WRAP":
            q = torch.remainder(q - lo, 2.0**self.width) + lo
        elif self.overflow == "SAT_ZERO":
            q = torch.where((q < lo) | (q > hi), torch.zeros_like(q), q)
        else:
            q = q.clamp(-hi if self.overflow == "SAT_SYM" and self.signed else lo, hi)
        return q * self.lsb

    def replace(self, **changes) -> "FixedPoint":
        return dataclasses.replace(self, **changes)


def parse_precision(precision) -> FixedPoint:
    """``"ap_fixed<16,6>"``, ``"fixed<8,3,AP_RND,AP_SAT>"``, ``"ap_ufixed<8,0>"``, a (width, integer) pair
    or a :class:`FixedPoint`."""
    if isinstance(precision, FixedPoint):
        return precision
    if isinstance(precision, (tuple, list)) and len(precision) == 2:
        return FixedPoint(int(precision[0]), int(precision[1]))
    m = _PRECISION.match(str(precision))
    if m is None:
        raise ConfigError(f"cannot parse the precision {precision!r}; expected an hls4ml fixed-point type such as "
                          "'ap_fixed<16,6>' (16 bits, 6 of them integer bits including the sign), "
                          "'ap_ufixed<8,0>' or 'ap_fixed<8,3,AP_RND,AP_SAT>'.")
    unsigned, w, i, rnd, ovf = m.groups()
    rnd, ovf = (rnd or "TRN").upper(), (ovf or "WRAP").upper()
    if rnd not in ROUNDING or ovf not in OVERFLOW:
        raise ConfigError(f"the precision {precision!r} names rounding AP_{rnd} and overflow AP_{ovf}; expected "
                          f"rounding one of {['AP_' + r for r in ROUNDING]} and overflow one of "
                          f"{['AP_' + o for o in OVERFLOW]}.")
    return FixedPoint(int(w), int(i), not unsigned, rnd, ovf)


@dataclass(frozen=True)
class Precision:
    """The fixed-point settings of one firmware: the type of the input, activations and pooling outputs
    (``data``), of the weights and biases (``weights``, default ``data``), and the accumulators
    (``accum``: "auto", as wide as the sums need as hls4ml infers them, or "same": every product and sum
    cast to ``data``)."""

    data: FixedPoint
    weights: FixedPoint | None = None
    accum: str = "auto"

    def __post_init__(self):
        if self.accum not in ACCUM:
            raise ConfigError(f"accum={self.accum!r} is not known; expected one of {ACCUM}.")

    @classmethod
    def of(cls, precision, weight_precision=None, accum: str = "auto") -> "Precision":
        """From hls4ml type names (or FixedPoint objects, or an existing Precision)."""
        if isinstance(precision, Precision):
            return precision
        return cls(parse_precision(precision), None if weight_precision is None else parse_precision(weight_precision),
                   accum)

    @property
    def weight(self) -> FixedPoint:
        """The weights' and biases' type."""
        return self.weights or self.data

    def slope(self, alpha: float) -> FixedPoint:
        """The leaky-ReLU slope's type: ap_ufixed<8,I> with the slope's leading bit on top ("auto"), else data."""
        if self.accum == "same" or alpha <= 0:
            return self.data
        return FixedPoint(8, int(math.floor(math.log2(alpha))) + 1, signed=False)

    def __str__(self) -> str:
        return str(self.data) + ("" if self.weights is None else f", weights {self.weights}")


def round_weights(w: torch.Tensor, p: FixedPoint) -> torch.Tensor:
    """Weights and biases on ``p``'s grid: rounded to the nearest value (ties to even) and saturated.

    This is done offline, before hls4ml sees the network. hls4ml writes float weights as decimal text and the
    firmware's cast truncates them (the type's default ``AP_TRN``), which moves every weight down by half an LSB
    on average: at ``ap_fixed<16,6>`` that alone cost the trigger preset about 1% of its per-sample score
    (median), against 0.2% with rounded weights. Values on the grid survive hls4ml's text and cast exactly.
    """
    return weight_type(p).quantize(w)


def weight_type(p: FixedPoint) -> FixedPoint:
    """p with the rounding and overflow that :func:`round_weights` applies: nearest (ties to even), saturate."""
    return p.replace(rounding="RND_CONV", overflow="SAT")


def cast_weights(w: torch.Tensor, p: FixedPoint) -> torch.Tensor:
    """Weights and biases as the firmware holds them: :func:`round_weights` in float32 (what aelab hands
    hls4ml), then hls4ml's own path, decimal text with max(0, W - I) places cast to the type (exact for
    values on the grid up to 24 significant bits)."""
    places = max(0, p.width - p.integer)
    text = [float(f"{v:.{places}f}") for v in round_weights(w, p).float().flatten().tolist()]
    return p.quantize(torch.tensor(text, dtype=torch.float64).reshape(w.shape))
