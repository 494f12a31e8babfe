"""Convolutional building blocks, from LeNet (1998) to DenseNet (2017) and U-Net (2015).

Every block takes the activation as a module *class* (``nn.ReLU``, ``nn.Tanh``,
``functools.partial(nn.LeakyReLU, 0.1)``, or ``nn.Identity`` for linear models) and
never hard-codes one. Batch normalisation is optional and off by default: plain
convolution + activation networks are the easiest to fold into fixed-point FPGA
firmware (hls4ml), and the small autoencoders of this library train well without it.
Pooling is ``"max"`` or ``"avg"``; choose ``"avg"`` together with ``nn.Identity`` when
the whole network must be linear (max pooling is not).

The plain stacks and their parts (:class:`ConvAct`, :class:`LeNetStack`, :class:`VGGStack`,
pooling and padding) live in :mod:`aelab.nn.stacks`; this module re-exports them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ..exceptions import ConfigError

__all__ = [
    "ConvAct",
    "LeNetStack",
    "VGGStack",
    "ResidualBlock",
    "InceptionModule",
    "DenseBlock",
    "Transition",
    "UNet",
    "BottleneckBypassWarning",
    "check_anomaly_use",
    "make_pool",
    "pad_to_multiple",
]

from .stacks import POOLS, Activation, ConvAct, LeNetStack, VGGStack, make_pool, pad_to_multiple  # noqa: F401


class ResidualBlock(nn.Module):
    """ResNet basic block: ``act(conv3x3(act(conv3x3(x))) + shortcut(x))``.

    From He, Zhang, Ren & Sun, "Deep residual learning for image recognition" (2015).
    The shortcut is the identity, or a 1x1 projection convolution (option B of the
    paper) when the number of channels or the stride changes.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int or None, default=None
        Output channels; ``None`` keeps ``in_channels``.
    stride : int, default=1
        Stride of the first convolution and of the projection; 2 halves H and W.
    activation : class, default=nn.ReLU
        Activation module class.
    batch_norm : bool, default=False
        Batch norm after each convolution (and the projection).

    Attributes
    ----------
    out_channels : int
        Channels of the output.
    shortcut : nn.Module
        :class:`~torch.nn.Identity` or the projection.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1,
                 activation: Activation = nn.ReLU, batch_norm: bool = False) -> None:
        super().__init__()
        cout = in_channels if out_channels is None else out_channels
        self.body = nn.Sequential(
            ConvAct(in_channels, cout, 3, stride, activation, batch_norm),
            ConvAct(cout, cout, 3, 1, None, batch_norm),
        )
        project = cout != in_channels or stride != 1
        self.shortcut = ConvAct(in_channels, cout, 1, stride, None, batch_norm) if project else nn.Identity()
        self.act = activation()
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class InceptionModule(nn.Module):
    """GoogLeNet Inception module: parallel 1x1, 3x3, 5x5 convolutions and a pool.

    From Szegedy et al., "Going deeper with convolutions" (2014), figure 2. The four
    branches see the same input and their outputs are concatenated along channels.
    The pool branch is a 3x3 pooling with stride 1 and padding 1.

    * ``reduce=False`` is the paper's naive version (2a): no 1x1 reductions, and the
      pool branch passes its ``in_channels`` through, so
      ``out_channels = c1 + c3 + c5 + in_channels``.
    * ``reduce=True`` (2b) puts a 1x1 reduction before the 3x3 and 5x5 convolutions and a
      1x1 projection to ``cpool`` channels after the pool:
      ``out_channels = c1 + c3 + c5 + cpool``. For inception (3a) at 28x28x192 this
      cuts the weights from 387K to 163K (``aelab.nn.cost`` shows it, see docs/nn.md).

    Parameters
    ----------
    in_channels : int
        Input channels.
    c1, c3, c5 : int
        Output channels of the 1x1, 3x3 and 5x5 branches.
    cpool : int
        Channels of the pool projection (ignored when ``reduce=False``).
    reduce : bool, default=True
        Use 1x1 reductions and the pool projection.
    c3_reduce, c5_reduce : int or None, default=None
        Channels of the 1x1 reductions; ``None`` means ``max(1, c3 // 2)`` and
        ``max(1, c5 // 2)``. Only valid with ``reduce=True``.
    activation : class, default=nn.ReLU
        Activation after every convolution.
    batch_norm : bool, default=False
        Batch norm after every convolution.
    pool : {"max", "avg"}, default="max"
        Pool branch type (the paper uses max).

    Attributes
    ----------
    out_channels : int
        Channels of the output.
    """

    def __init__(self, in_channels: int, c1: int, c3: int, c5: int, cpool: int,
                 reduce: bool = True, c3_reduce: int | None = None, c5_reduce: int | None = None,
                 activation: Activation = nn.ReLU, batch_norm: bool = False,
                 pool: str = "max") -> None:
        super().__init__()
        if not reduce and (c3_reduce is not None or c5_reduce is not None):
            raise ConfigError(
                "c3_reduce and c5_reduce need reduce=True; the naive module (reduce=False) "
                "has no 1x1 reductions."
            )

        def unit(cin: int, cout: int, k: int) -> ConvAct:
            return ConvAct(cin, cout, k, 1, activation, batch_norm)

        pooling = make_pool(pool, 3, 1, 1)
        if reduce:
            r3 = max(1, c3 // 2) if c3_reduce is None else c3_reduce
            r5 = max(1, c5 // 2) if c5_reduce is None else c5_reduce
            branches = [
                unit(in_channels, c1, 1),
                nn.Sequential(unit(in_channels, r3, 1), unit(r3, c3, 3)),
                nn.Sequential(unit(in_channels, r5, 1), unit(r5, c5, 5)),
                nn.Sequential(pooling, unit(in_channels, cpool, 1)),
            ]
        else:
            cpool = in_channels
            branches = [unit(in_channels, c1, 1), unit(in_channels, c3, 3),
                        unit(in_channels, c5, 5), pooling]
        self.branches = nn.ModuleList(branches)
        self.reduce = reduce
        self.out_channels = c1 + c3 + c5 + cpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class DenseBlock(nn.Module):
    """DenseNet dense block: each layer sees the concatenation of all earlier outputs.

    From Huang, Liu, van der Maaten & Weinberger, "Densely connected convolutional
    networks" (2016, CVPR 2017). Layer ``i`` maps ``in_channels + i * growth_rate``
    channels to ``growth_rate`` with a 3x3 convolution; the block returns the input and
    every layer's output concatenated. The paper orders each layer BN-ReLU-Conv
    (pre-activation); here it is Conv-[BN]-activation like every other block, so all
    concatenated features except the input are activated.

    Parameters
    ----------
    in_channels : int
        Input channels.
    growth_rate : int
        Channels added by each layer (the paper's k).
    n_layers : int
        Number of layers.
    activation : class, default=nn.ReLU
        Activation module class.
    batch_norm : bool, default=False
        Batch norm after each convolution.

    Attributes
    ----------
    out_channels : int
        ``in_channels + n_layers * growth_rate``.
    """

    def __init__(self, in_channels: int, growth_rate: int, n_layers: int,
                 activation: Activation = nn.ReLU, batch_norm: bool = False) -> None:
        super().__init__()
        if growth_rate < 1 or n_layers < 1:
            raise ConfigError(
                f"DenseBlock needs growth_rate >= 1 and n_layers >= 1; got "
                f"growth_rate={growth_rate}, n_layers={n_layers}."
            )
        self.layers = nn.ModuleList(
            ConvAct(in_channels + i * growth_rate, growth_rate, 3, 1, activation, batch_norm)
            for i in range(n_layers)
        )
        self.out_channels = in_channels + n_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """DenseNet transition layer: 1x1 convolution, then 2x2 average pooling.

    From Huang et al., "Densely connected convolutional networks" (2016): it sits between
    dense blocks, sets the number of channels (compression) and halves H and W.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    activation : class, default=nn.ReLU
        Activation after the convolution.
    batch_norm : bool, default=False
        Batch norm after the convolution.
    pool : {"avg", "max"} or None, default="avg"
        Pooling; ``None`` keeps the size (used in decoders).
    """

    def __init__(self, in_channels: int, out_channels: int, activation: Activation = nn.ReLU,
                 batch_norm: bool = False, pool: str | None = "avg") -> None:
        layers: list[nn.Module] = [ConvAct(in_channels, out_channels, 1, 1, activation, batch_norm)]
        if pool is not None:
            layers.append(make_pool(pool, 2))
        super().__init__(*layers)
        self.out_channels = out_channels


class BottleneckBypassWarning(UserWarning):
    """A model whose skip connections bypass its bottleneck is used for anomaly scores."""


_BYPASS_MESSAGE = (
    "{name} has skip connections that carry the input around its bottleneck, so it can "
    "reconstruct anomalies as well as normal data: its reconstruction error is a poor "
    "anomaly score. Use it for denoising; for anomaly detection use an autoencoder "
    "without skips (aelab.Autoencoder with any conv backbone)."
)


def check_anomaly_use(model: nn.Module, stacklevel: int = 2) -> bool:
    """Warn if ``model`` contains a module whose skips bypass the bottleneck.

    Estimators call this before computing reconstruction-based anomaly scores. Modules
    declare the property with a class attribute ``bypasses_bottleneck = True``
    (:class:`UNet` does).

    Parameters
    ----------
    model : nn.Module
        Model to inspect (all submodules are checked).
    stacklevel : int, default=2
        Frame the warning points to, counted from the caller of this function as in
        :func:`warnings.warn`: 1 is the caller, 2 (for estimators) the caller's caller.

    Returns
    -------
    bool
        True if a :class:`BottleneckBypassWarning` was issued.
    """
    for module in model.modules():
        if getattr(module, "bypasses_bottleneck", False):
            warnings.warn(_BYPASS_MESSAGE.format(name=type(module).__name__),
                          BottleneckBypassWarning, stacklevel=stacklevel + 1)
            return True
    return False


class UNet(nn.Module):
    """U-Net: a convolutional encoder-decoder with skip connections at every level.

    From Ronneberger, Fischer & Brox, "U-Net: convolutional networks for biomedical
    image segmentation" (2015). Each level is two 3x3 convolutions (as in the paper);
    going down uses 2x2 pooling, going up uses nearest-neighbour upsampling (instead
    of the paper's 2x2 up-convolution, so the network stays convertible by hls4ml),
    concatenation with the encoder features of the same level, and two 3x3
    convolutions. A final 1x1 convolution without activation gives ``out_channels``.
    Inputs of any size work: they are zero-padded to a multiple of
    ``2 ** (len(channels) - 1)`` and the output is cropped back.

    .. warning::
       The skips let the input bypass the bottleneck, so a U-Net can copy anomalies
       through: it is a good **denoiser** and the wrong model for **anomaly
       detection** by reconstruction error. :meth:`warn_anomaly` (or
       :func:`check_anomaly_use`) issues a :class:`BottleneckBypassWarning`.

    Parameters
    ----------
    in_channels : int, default=1
        Input channels.
    out_channels : int or None, default=None
        Output channels; ``None`` means ``in_channels``.
    channels : sequence of int, default=(16, 32, 64)
        Channels per level; the last is the bottleneck, so there are
        ``len(channels) - 1`` poolings.
    activation : class, default=nn.ReLU
        Activation module class.
    batch_norm : bool, default=False
        Batch norm after each convolution.
    pool : {"max", "avg"}, default="max"
        Downsampling.
    """

    bypasses_bottleneck = True

    def __init__(self, in_channels: int = 1, out_channels: int | None = None,
                 channels: Sequence[int] = (16, 32, 64), activation: Activation = nn.ReLU,
                 batch_norm: bool = False, pool: str = "max") -> None:
        super().__init__()
        channels = tuple(channels)
        if len(channels) < 2:
            raise ConfigError(
                f"UNet needs at least two levels (channels=(c0, c_bottleneck)); got {channels!r}."
            )

        def level(cin: int, cout: int) -> VGGStack:
            return VGGStack(cin, (cout,), 2, activation, batch_norm, pool=None)

        ins = (in_channels,) + channels[:-2]
        self.down = nn.ModuleList(level(cin, c) for cin, c in zip(ins, channels[:-1]))
        self.bottleneck = level(channels[-2], channels[-1])
        self.up = nn.ModuleList(
            level(deep + c, c) for deep, c in zip(channels[:0:-1], channels[-2::-1])
        )
        self.pool = make_pool(pool, 2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(channels[0], in_channels if out_channels is None else out_channels, 1)
        self.multiple = 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(torch.cat([self.upsample(x), skip], dim=1))
        return self.head(x)[..., :h, :w]

    def warn_anomaly(self) -> bool:
        """Issue the :class:`BottleneckBypassWarning`; call before anomaly scoring."""
        return check_anomaly_use(self, stacklevel=2)
