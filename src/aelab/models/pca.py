"""Principal component analysis as a network with the autoencoder's interface.

The encoder is z = W (x - m), the decoder x' = W^T z + m, with W the top-k right
singular vectors of the centred training data: the closed-form optimum that a
linear autoencoder only approaches by gradient descent (Baldi & Hornik 1989).
"""

from __future__ import annotations

import math

import numpy as np

import torch
from torch import nn

from ..config import ModelConfig
from .autoencoder import AEOutput


class PCANet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = math.prod(cfg.input_shape)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.zeros(cfg.latent_dim, d))
        self.register_buffer("explained_variance", torch.zeros(cfg.latent_dim))

    @torch.no_grad()
    def fit(self, X: torch.Tensor) -> "PCANet":
        """Fit on scaled training data ``X`` of shape (n, *input_shape) by SVD (float64)."""
        X = X.reshape(X.shape[0], -1).double()
        mean = X.mean(0)
        # LAPACK's divide-and-conquer SVD through NumPy: far faster on CPU than torch's here
        _, S, Vh = np.linalg.svd((X - mean).cpu().numpy(), full_matrices=False)
        S, Vh = torch.from_numpy(S).to(X.device), torch.from_numpy(Vh).to(X.device)
        k = self.cfg.latent_dim
        # sign convention: largest |loading| of each component positive (reproducible)
        signs = torch.sign(Vh[:k].gather(1, Vh[:k].abs().argmax(1, keepdim=True)))
        self.mean.copy_(mean)
        self.components.copy_(Vh[:k] * signs)
        self.explained_variance.copy_(S[:k].square() / max(X.shape[0] - 1, 1))
        return self

    def encode(self, x):
        return (x.reshape(x.shape[0], -1) - self.mean) @ self.components.T, None

    def decode(self, z):
        return (z @ self.components + self.mean).reshape(z.shape[0], *self.cfg.input_shape)

    def forward(self, x, sample: bool = False) -> AEOutput:
        z, _ = self.encode(x)
        return AEOutput(self.decode(z), z)
