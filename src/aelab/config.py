"""Typed settings of a network, saved as JSON and used to rebuild it on load.

The estimators' constructor arguments are the user-facing configuration (as in
scikit-learn); :class:`ModelConfig` is the resolved, concrete description of one
network ("auto" values already decided), in the spirit of nanoGPT's ``GPTConfig``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .exceptions import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "autoencoder"           # "autoencoder" (dense or conv, optionally variational) | "pca"
    input_shape: tuple = ()             # per-sample shape the network sees: (d,) or (c, h, w)
    latent_dim: int = 16                # size k of the code z
    arch: str = "dense"                 # "dense" | "conv"
    hidden: tuple = (256, 64)           # dense: widths of the encoder's hidden layers (decoder mirrors)
    channels: tuple = (32, 64)          # conv: channels per encoder stage (each halves H and W)
    backbone: str = "plain"             # conv: encoder/decoder family, see aelab.nn.BACKBONES
    linear: bool = False                # True: no non-linearity anywhere (the PCA-equivalent AE)
    variational: bool = False           # True: Gaussian encoder (mu, logvar), VAE
    output: str = "sigmoid"             # "sigmoid" for data scaled to [0, 1], "identity" otherwise
    activation: str = "relu"            # hidden non-linearity: "relu" | "leaky_relu" | "elu" | "tanh"
    batch_norm: bool = False            # dense: BatchNorm1d after each hidden Linear (folded into it on export)
    mask_zeros: bool = False            # True: inputs that are exactly 0 (absent, zero-padded objects) are
                                        # reconstructed as given, so they add no error to the loss or scores

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown model settings {sorted(unknown)}; expected a subset of {sorted(names)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50                    # upper bound on passes over the data
    batch_size: int = 128
    lr: float = 1e-3                    # Adam learning rate
    weight_decay: float = 0.0           # Adam (L2) weight decay
    validation_fraction: float = 0.1    # held-out share for early stopping; 0 disables
    early_stopping: bool = True         # stop when the monitored loss stops improving, restore best weights
    patience: int = 10                  # epochs without improvement before stopping
    min_delta: float = 1e-4             # relative improvement that counts
    grad_clip: float | None = 10.0      # max global gradient norm; None disables
    extra: dict = field(default_factory=dict)


def jsonable(v):
    """``v`` with tuples as lists and NumPy scalars as Python numbers; values JSON cannot hold become None."""
    if isinstance(v, tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return None  # e.g. a np.random.Generator as random_state: not reproducible from a file
