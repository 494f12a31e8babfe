"""Raw rows -> the network's input, and back: the one implementation of the scaler and the layout.

:class:`Preprocess` is an ``nn.Module`` whose buffers are a fitted :class:`~aelab.preprocessing.Scaler`'s
offset and scale (float32 and float64) and whose forward runs, in order,

1. the scaler's per-sample steps (``"sum"``: each sample over its total; ``"sqrt"`` / ``"log1p"``:
   the signed range compression; see :data:`aelab.preprocessing.INTENSITY`), in float64;
2. the affine scaling ``(x - offset) / scale``, per column of the flattened row or by one pooled
   pair, in float64 for float64 input (or after the steps) and in float32 otherwise, then cast to
   float32 (large offsets keep their digits in float64);
3. the layout: channels-last images to channels-first, then the network's shape (which
   ``Layout.net_shape`` gives; zero-padding for pooling is the model's own first step).

:meth:`inverse` undoes 3, 2 and the range compression (in float64; the division by a sample's
total is per sample and not undone). Python scoring (``Fitted.to_net`` / ``from_net``, and
``Scaler.transform``) and the exported ONNX graph (:class:`aelab.export.onnx.ScoreGraph`) run this
module; nothing else re-implements it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["Preprocess", "apply_steps", "as_tensor"]


def as_tensor(X) -> torch.Tensor:
    """A numpy array (any numeric dtype, read-only or strided) as a tensor, without copying when it can."""
    X = np.asarray(X)
    if not X.flags.writeable:
        X = X.copy()
    return torch.from_numpy(X)


def apply_steps(x: torch.Tensor, steps) -> torch.Tensor:
    """Step 1, the per-sample steps (a tuple of names, or "+"-joined), in float64."""
    steps = tuple(str(steps).split("+")) if isinstance(steps, str) else tuple(steps)
    x = x.to(torch.float64)
    if "sum" in steps:
        total = x.reshape(x.shape[0], -1).sum(dim=1).reshape(-1, *([1] * (x.dim() - 1)))
        x = x / torch.where(total != 0, total, torch.ones_like(total))
    if "sqrt" in steps:
        x = torch.sign(x) * torch.sqrt(torch.abs(x))
    elif "log1p" in steps:
        x = torch.sign(x) * torch.log1p(torch.abs(x))
    return x


class Preprocess(nn.Module):
    """``forward``: raw rows (n, *input_shape) -> network input (n, *net_shape), float32. ``scale``: steps 1
    and 2 only (the user's layout). ``inverse``: network-layout rows -> the user's shape and units."""

    def __init__(self, scaler, input_shape: tuple | None = None, net_shape: tuple | None = None,
                 channels_last: bool = False, image_shape: tuple | None = None):
        super().__init__()
        self.steps = tuple(s for s in str(getattr(scaler, "pre", "none")).split("+") if s != "none")
        offset = np.atleast_1d(np.asarray(scaler.offset, np.float64))
        scale = np.atleast_1d(np.asarray(scaler.scale, np.float64))
        self.per_column = offset.size > 1
        self.register_buffer("offset", torch.from_numpy(offset.astype(np.float32)))
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)))
        self.register_buffer("offset64", torch.from_numpy(offset))
        self.register_buffer("scale64", torch.from_numpy(scale))
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.net_shape = None if net_shape is None else tuple(net_shape)
        self.channels_last, self.image_shape = bool(channels_last), image_shape

    @classmethod
    def of(cls, fitted) -> Preprocess:
        """The module of a :class:`~aelab.fitted.Fitted` (its scaler and layout), on the CPU."""
        lay = fitted.layout
        return cls(fitted.scaler, lay.input_shape, fitted.net_shape, lay.channels_last,
                   lay.image_shape if lay.channels_last else None)

    def scale_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1 and 2: scaled rows in the user's layout, float32."""
        if self.steps:
            x = apply_steps(x, self.steps)
        wide = x.dtype == torch.float64
        x = x.to(torch.float64 if wide else torch.float32)
        offset, scale = (self.offset64, self.scale64) if wide else (self.offset, self.scale)
        if self.per_column:
            x = ((x.reshape(-1, offset.numel()) - offset) / scale).reshape(-1, *x.shape[1:])
        else:
            x = (x - offset) / scale
        return x.to(torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale_rows(x)
        if self.channels_last:  # (n, h, w, c) -> (n, c, h, w)
            x = x.permute(0, 3, 1, 2)
        return x.reshape(-1, *self.net_shape).contiguous()

    def unscale_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`scale_rows` (float64 arithmetic, float32 result)."""
        x = x.to(torch.float64)
        if self.per_column:
            x = (x.reshape(-1, self.offset64.numel()) * self.scale64 + self.offset64).reshape(-1, *x.shape[1:])
        else:
            x = x * self.scale64 + self.offset64
        if "sqrt" in self.steps:
            x = torch.sign(x) * x.square()
        elif "log1p" in self.steps:
            x = torch.sign(x) * (torch.exp(torch.abs(x)) - 1.0)  # expm1 has no ONNX operator
        return x.to(torch.float32)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Network-layout rows -> the user's shape and units, float32."""
        if self.channels_last:
            x = x.reshape(-1, *self.image_shape).permute(0, 2, 3, 1)
        return self.unscale_rows(x.reshape(-1, *self.input_shape))
