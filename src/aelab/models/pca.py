"""Principal component analysis as a network with the autoencoder's interface.

The encoder is z = W (x - m), the decoder x' = W^T z + m, with W the top-k
eigenvectors of the training data's covariance (the right singular vectors of the
centred data): the closed-form optimum that a
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
    def fit_moments(self, mean: np.ndarray, scatter: np.ndarray, n: int) -> "PCANet":
        """Fit from the mean and scatter matrix sum_i (x_i - m)(x_i - m)^T of n scaled rows (float64).

        The eigenvectors of the covariance are the right singular vectors of the centred
        data; the moments can be accumulated chunk by chunk, so the data never has to be
        in memory at once.
        """
        cov = np.asarray(scatter, np.float64) / max(n - 1, 1)
        evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
        k = self.cfg.latent_dim
        order = np.argsort(evals)[::-1][:k]
        Vh = torch.from_numpy(np.ascontiguousarray(evecs[:, order].T))
        signs = torch.sign(Vh.gather(1, Vh.abs().argmax(1, keepdim=True)))
        dev = self.mean.device
        self.mean.copy_(torch.from_numpy(np.asarray(mean, np.float64)).to(dev))
        self.components.copy_((Vh * signs).to(dev))
        self.explained_variance.copy_(torch.from_numpy(np.maximum(evals[order], 0.0)).to(dev))
        return self

    def encode(self, x):
        return (x.reshape(x.shape[0], -1) - self.mean) @ self.components.T, None

    def decode(self, z):
        return (z @ self.components + self.mean).reshape(z.shape[0], *self.cfg.input_shape)

    def forward(self, x, sample: bool = False) -> AEOutput:
        z, _ = self.encode(x)
        return AEOutput(self.decode(z), z)
