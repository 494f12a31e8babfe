"""Plain convolutional stacks and their parts: convolution + activation, pooling, padding,
and the stacks of stages built from them (LeNet 1998, VGG 2014).

Every block takes the activation as a module *class* and never hard-codes one; batch
normalisation is optional and off by default. The blocks with branches and skips
(ResNet, Inception, DenseNet, U-Net) are in :mod:`aelab.nn.blocks`, which re-exports these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ConfigError

__all__ = ["Activation", "POOLS", "ConvAct", "LeNetStack", "VGGStack", "make_pool", "pad_to_multiple"]

Activation = Callable[[], nn.Module]
POOLS = ("max", "avg")


def make_pool(kind: str, kernel_size: int = 2, stride: int | None = None, padding: int = 0) -> nn.Module:
    """Return a max- or average-pooling layer.

    Parameters
    ----------
    kind : {"max", "avg"}
        ``"avg"`` keeps a network linear; ``"max"`` is the usual choice otherwise.
    kernel_size, stride, padding : int
        As in :class:`torch.nn.MaxPool2d`; ``stride`` defaults to ``kernel_size``.
        Average pooling ignores padded cells (``count_include_pad=False``).
    """
    if kind == "max":
        return nn.MaxPool2d(kernel_size, stride, padding)
    if kind == "avg":
        return nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=False)
    raise ConfigError(f"pool={kind!r} is not known; expected one of {list(POOLS)}.")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the last two dimensions (bottom and right) up to a multiple of ``multiple``."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))


class ConvAct(nn.Sequential):
    """Convolution, optional batch norm, activation: the unit all other blocks are made of.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int, default=3
        Square kernel size.
    stride : int, default=1
        Stride; 2 halves even spatial sizes exactly.
    activation : class or None, default=nn.ReLU
        Activation module class; ``None`` leaves the convolution linear (used before a
        residual addition).
    batch_norm : bool, default=False
        Add :class:`~torch.nn.BatchNorm2d` after the convolution, which then has no bias.
    padding : int or None, default=None
        ``None`` pads by ``kernel_size // 2`` ("same" size for odd kernels at stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        activation: Activation | None = nn.ReLU,
        batch_norm: bool = False,
        padding: int | None = None,
    ) -> None:
        pad = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=not batch_norm)
        ]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = out_channels


class _ConvPoolStack(nn.Sequential):
    """Stages of ``convs_per_stage`` convolutions, each stage followed by a 2x2 pool."""

    def __init__(self, in_channels, channels, convs_per_stage, kernel_size, padding,
                 activation, batch_norm, pool):
        if not channels or convs_per_stage < 1:
            raise ConfigError(
                f"{type(self).__name__} needs at least one stage and one convolution per "
                f"stage; got channels={tuple(channels)!r}, convs_per_stage={convs_per_stage}."
            )
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in channels:
            for _ in range(convs_per_stage):
                layers.append(ConvAct(cin, cout, kernel_size, 1, activation, batch_norm, padding))
                cin = cout
            if pool is not None:
                layers.append(make_pool(pool, 2))
        super().__init__(*layers)
        self.out_channels = cin


class LeNetStack(_ConvPoolStack):
    """Plain stack of convolution + activation + 2x2 pooling stages.

    The feature extractor of LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based
    learning applied to document recognition", Proc. IEEE, 1998): one convolution per
    stage, then subsampling. The defaults are the modern reading (ReLU, max pooling,
    size-preserving padding); the 1998 network is
    ``LeNetStack(1, (6, 16), kernel_size=5, padding=0, activation=nn.Tanh, pool="avg")``
    on 32x32 inputs (its C3 layer used a sparse connection table, here it is dense).

    Parameters
    ----------
    in_channels : int
        Input channels.
    channels : sequence of int, default=(6, 16)
        Output channels of each stage.
    kernel_size : int, default=5
        Convolution kernel size.
    padding : int or None, default=None
        ``None`` keeps the size through each convolution (``kernel_size // 2``).
    activation : class, default=nn.ReLU
        Activation module class.
    batch_norm : bool, default=False
        Batch norm after each convolution.
    pool : {"max", "avg"} or None, default="max"
        Pooling after each stage; ``None`` for none (decoders).

    Attributes
    ----------
    out_channels : int
        Channels of the output.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (6, 16), kernel_size: int = 5,
                 padding: int | None = None, activation: Activation = nn.ReLU,
                 batch_norm: bool = False, pool: str | None = "max") -> None:
        super().__init__(in_channels, channels, 1, kernel_size, padding, activation, batch_norm, pool)


class VGGStack(_ConvPoolStack):
    """Stages of several 3x3 convolutions, each stage followed by 2x2 pooling.

    From VGG (Simonyan & Zisserman, "Very deep convolutional networks for large-scale
    image recognition", 2014): two stacked 3x3 convolutions see a 5x5 field with fewer
    parameters and one more non-linearity than a single 5x5 convolution.

    Parameters
    ----------
    in_channels : int
        Input channels.
    channels : sequence of int
        Output channels of each stage.
    convs_per_stage : int, default=2
        Number of 3x3 convolutions in each stage.
    activation : class, default=nn.ReLU
        Activation module class.
    batch_norm : bool, default=False
        Batch norm after each convolution.
    pool : {"max", "avg"} or None, default="max"
        Pooling after each stage; ``None`` for none (decoders).

    Attributes
    ----------
    out_channels : int
        Channels of the output.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], convs_per_stage: int = 2,
                 activation: Activation = nn.ReLU, batch_norm: bool = False,
                 pool: str | None = "max") -> None:
        super().__init__(in_channels, channels, convs_per_stage, 3, None, activation, batch_norm, pool)
