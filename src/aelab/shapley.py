"""Shapley values of a fitted model's score, for :func:`aelab.explain.explain`: interventional, or with
the features outside a coalition imputed conditionally (:class:`Gaussian`).

Three ways to the same values: :func:`shapley_enumerate` enumerates every coalition (a check
for small cases); for an affine network and a score quadratic in its input (PCA, the linear
autoencoder; "mse", "latent", "mse+latent") the exact closed form of a quadratic
(:func:`_quadratic_form` reads A, c and c0 off the network, :func:`_closed_form` applies
them); otherwise permutation sampling with antithetic pairs and the background row's score
as control variate (:func:`_sampled`), the points scored in batches by :class:`_PointScorer`.
:mod:`aelab.explain` describes the methods and re-exports :func:`shapley_enumerate`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from .exceptions import ConfigError
from .kinds import kind_of
from .neighbours import _bag_topk
from .scoring import knn_combined, neighbour_score, score_batch

__all__ = ["shapley_enumerate", "Gaussian", "QUADRATIC_SCORES"]

QUADRATIC_SCORES = ("mse", "latent", "mse+latent")  # quadratic in the input for an affine network
POINTS_PER_BATCH = 4096    # path points per forward pass of the sampler
AUTO_PLAYERS = 64          # "auto" patch size keeps an image's players at about this many
GAUSSIAN_RIDGE = 1e-2      # added to the background covariance's diagonal, times its mean variance
COALITION_POINTS = 1 << 18  # path points built at once by the conditional sampler (rows share coalitions)


class Gaussian:
    """Conditional imputation under a Gaussian fitted to the background rows (dependent features).

    For a coalition S of known inputs, a background row b is moved to agree with x on S, and
    the inputs outside S move with them along the background's regression,

        x_~S = b_~S + K_S (x_S - b_S),    K_S = C_{~S,S} (C_{S,S})^{-1},

    which is x_S's conditional mean plus b's own residual from its conditional mean: a draw
    from the conditional distribution when the data are Gaussian, with real residuals when
    they are not (Aas, Jullum and Loland 2021 impute from the same Gaussian). Features that
    move together are then never set apart: a point keeps the correlations of the data, and
    the value of a coalition says what its inputs imply about the rest. ``C`` is the
    background's covariance (in the scaled units the network sees) plus a ridge of
    :data:`GAUSSIAN_RIDGE` times its mean variance.
    """

    def __init__(self, Bn: np.ndarray, ridge: float = GAUSSIAN_RIDGE):
        B = np.asarray(Bn, np.float64).reshape(len(Bn), -1)
        Bc = B - B.mean(axis=0)
        C = Bc.T @ Bc / max(len(B), 1)
        mean_var = float(np.trace(C)) / max(len(C), 1)
        C[np.diag_indices_from(C)] += ridge * (mean_var if mean_var > 0 else 1.0)
        self.cov = torch.from_numpy(C)

    def gain(self, S: np.ndarray) -> torch.Tensor:
        """K_S, float32 (|~S|, |S|)."""
        inside, rest = np.flatnonzero(S), np.flatnonzero(~S)
        C = self.cov
        return torch.linalg.solve(C[np.ix_(inside, inside)], C[np.ix_(inside, rest)]).T.float()

    def fill(self, x: torch.Tensor, b: torch.Tensor, S: np.ndarray) -> torch.Tensor:
        """Points (r, D): x on the inputs ``S`` (a boolean per input), b moved with them elsewhere."""
        p = b.clone()
        p[:, S] = x[:, S]
        if S.any() and not S.all():
            p[:, ~S] += (x[:, S] - b[:, S]) @ self.gain(S).T
        return p


def shapley_enumerate(fn, x: np.ndarray, background: np.ndarray, groups: np.ndarray | None = None,
                      gaussian: Gaussian | None = None):
    """Exact Shapley values by enumerating every coalition (a check for small cases).

    ``fn``: (m, D) -> (m,) scores; ``x``: (D,); ``background``: (nb, D); ``groups``: player of
    each input (default: one per input); ``gaussian``: impute the inputs outside a coalition
    conditionally (:class:`Gaussian`) instead of from the background row alone (interventional).
    Returns (phi per player, base value). 2^G * nb points.
    """
    x = np.asarray(x, np.float64).ravel()
    B = np.asarray(background, np.float64).reshape(len(background), -1)
    D = x.size
    groups = np.arange(D) if groups is None else np.asarray(groups)
    G = int(groups.max()) + 1
    if G > 16:
        raise ConfigError(f"shapley_enumerate needs 2^G coalitions; G={G} players is too many (at most 16).")
    subsets = np.array([[(s >> g) & 1 for g in range(G)] for s in range(2**G)], dtype=bool)   # (2^G, G)
    masks = subsets[:, groups]                                                                  # (2^G, D)
    if gaussian is None:
        pts = np.where(masks[:, None, :], x[None, None, :], B[None, :, :]).reshape(-1, D)
    else:
        xt, Bt = torch.as_tensor(x, dtype=torch.float32).expand(len(B), D), torch.as_tensor(B, dtype=torch.float32)
        pts = torch.stack([gaussian.fill(xt, Bt, m) for m in masks]).reshape(-1, D).double().numpy()
    v = np.asarray(fn(pts), np.float64).reshape(2**G, len(B)).mean(axis=1)
    size = subsets.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(G - s - 1) / math.factorial(G) if s < G else 0.0
                       for s in size])
    phi = np.zeros(G)
    for g in range(G):
        without = ~subsets[:, g]
        with_g = np.flatnonzero(without) + (1 << g)
        phi[g] = np.sum(weight[without] * (v[with_g] - v[without]))
    return phi, float(v[0])


def _quadratic_form(fitted, score: str, stats: dict):
    """(A, c, c0) with score(x) = x'Ax + c'x + c0 in the scaled, flattened input (float64), or None
    when the network is not affine. Read off a float64 copy of the network probed with unit vectors."""
    cfg = fitted.model_cfg
    if not kind_of(cfg).affine(cfg) or score not in QUADRATIC_SCORES:
        return None
    net = copy.deepcopy(fitted.model).to("cpu").double().eval()
    D = int(math.prod(fitted.net_shape))
    probe = torch.cat([torch.zeros(1, D, dtype=torch.float64), torch.eye(D, dtype=torch.float64)])
    with torch.no_grad():
        out = net(probe.reshape(D + 1, *fitted.net_shape), sample=False)
    xh = out.x_hat.reshape(D + 1, -1)
    z = out.z
    J = (xh[1:] - xh[0]).T            # x_hat = J x + w0
    w0 = xh[0]
    E = (z[1:] - z[0]).T              # z = E x + e0
    e0 = z[0]
    A = torch.zeros(D, D, dtype=torch.float64)
    c = torch.zeros(D, dtype=torch.float64)
    c0 = 0.0
    if score in ("mse", "mse+latent"):
        R = torch.eye(D, dtype=torch.float64) - J       # residual x - x_hat = R x - w0
        wr = 1.0 / D / (stats["mse"] if score == "mse+latent" else 1.0)
        A += wr * R.T @ R
        c += wr * (-2.0 * R.T @ w0)
        c0 += wr * float(w0 @ w0)
    if score in ("latent", "mse+latent"):
        P = stats["latent_precision"].cpu().double()
        m = stats["latent_mean"].cpu().double()
        wl = 1.0 / len(m) if score == "mse+latent" else 1.0
        u = e0 - m
        A += wl * E.T @ P @ E
        c += wl * 2.0 * E.T @ (P @ u)
        c0 += wl * float(u @ P @ u)
    A = (A + A.T) / 2
    return A.numpy(), c.numpy(), c0


def _closed_form(Xn: np.ndarray, Bn: np.ndarray, A, c, c0, choices: np.ndarray | None = None):
    """Exact interventional Shapley values of x'Ax + c'x + c0 (rows of Xn) against background rows Bn
    (row i against ``Bn[choices[i]]`` when given). Returns (phi (n, D), base (n,))."""
    X = Xn.astype(np.float64)
    B = Bn.astype(np.float64)
    BA = B @ A                                  # (A b)' per background row
    diagAM = B * BA                             # b_k (A b)_k: row means give (A M)_kk
    if choices is None:
        mu = np.broadcast_to(B.mean(axis=0), X.shape)
        dAM = np.broadcast_to(diagAM.mean(axis=0), X.shape)
    else:
        mu, dAM = B[choices].mean(axis=1), diagAM[choices].mean(axis=1)
    AX = X @ A          # (n, D): (A x) per row (A symmetric)
    phi = c * (X - mu) + X * AX + X * (mu @ A) - mu * AX - dAM
    if choices is None:
        return phi, float(diagAM.mean(axis=0).sum() + B.mean(axis=0) @ c + c0)
    return phi, dAM.sum(axis=1) + mu @ c + c0


class _PointScorer:
    """The score of flattened network-layout points (m, D), batched through the model.

    The neighbour distance of the "knn" scores is computed as the ONNX graph computes it
    (:meth:`aelab.export.onnx.ScoreGraph._knn`): one matrix product with the centred
    reference rows and a top-k, then ``|x - c|^2`` added to the k nearest only; for the
    many path points of the sampler this is several times faster than ``torch.cdist`` in
    blocks, and equal to it up to float32 rounding.
    """

    def __init__(self, fitted, score: str, stats: dict | None):
        self.f, self.score, self.stats = fitted, score, stats
        self.knn = None
        if neighbour_score(score):
            ref = stats["knn_ref"].float()
            centre = ref.mean(dim=0)
            ref = ref - centre
            self.knn = (centre, (-2.0 * ref).T.contiguous(), ref.square().sum(dim=1), int(stats["knn_k"]),
                        int(stats.get("knn_bags") or 1))

    def _dk(self, x: torch.Tensor) -> torch.Tensor:
        centre, ref_t, ref_sq, k, bags = self.knn
        xc = x.reshape(len(x), -1) - centre
        part = torch.addmm(ref_sq, xc, ref_t)
        d2 = (_bag_topk(part, k, bags)[0] + xc.square().sum(dim=1)[:, None, None]).clamp_min(0.0)
        return d2.sqrt().to(torch.float64).mean(dim=(1, 2))

    @torch.no_grad()
    def __call__(self, P: np.ndarray | torch.Tensor) -> np.ndarray:
        f = self.f
        P = torch.as_tensor(P, dtype=torch.float32)
        out = []
        for i in range(0, len(P), POINTS_PER_BATCH):
            x = P[i : i + POINTS_PER_BATCH].to(f.device).reshape(-1, *f.net_shape)
            if self.knn is not None:
                s = knn_combined(self.score, self._dk(x), f.model(x, sample=False), x, self.stats)
            else:
                s = score_batch(f.model, x, self.score, f.recon_kind, self.stats)
            out.append(s.double().cpu())
        return torch.cat(out).numpy() if out else np.empty(0)


def _sampled(fn, Xn: np.ndarray, Bn: np.ndarray, groups: np.ndarray, n_pairs: int, rng, fX: np.ndarray,
             fB: np.ndarray, base, choices: np.ndarray | None = None, gaussian: Gaussian | None = None):
    """Permutation sampling with antithetic pairs and the background score as control variate.

    Returns (phi, se), each (n, G). For pair t of row x: a random permutation pi and a
    background row b; the forward path adds players in pi's order, the reverse path in
    the opposite order; each player's marginal gains on the two paths are averaged (Y_t).
    With C_t = f(b_t) - base (known mean 0), phi = mean(Y) - beta mean(C), beta_g =
    cov(Y_g, C) / var(C); since sum_g Y_tg = f(x) - base - C_t, sum_g beta_g = -1 and phi
    sums to f(x) - base exactly. ``base``: a number or one per row; ``choices``: each row's own
    background rows (indices into Bn), default all. ``gaussian``: the inputs outside a coalition
    are imputed conditionally (:class:`Gaussian`); the rows of a block then share their T
    permutations, so that each coalition's regression is solved once for the block.
    """
    n, D = Xn.shape
    G = int(groups.max()) + 1
    T = n_pairs
    base = np.broadcast_to(np.asarray(base, dtype=np.float64), (n,))
    phi = np.zeros((n, G))
    se = np.zeros((n, G))
    if G == 1:
        phi[:, 0] = fX - base
        return phi, se
    per_row = T * 2 * (G - 1)
    chunk = max(1, (POINTS_PER_BATCH if gaussian is None else COALITION_POINTS) // per_row)
    steps = np.arange(1, G)
    B_t = torch.as_tensor(Bn, dtype=torch.float32)
    for s in range(0, n, chunk):
        X = torch.as_tensor(Xn[s : s + chunk], dtype=torch.float32)
        r = len(X)
        pool = [np.arange(len(Bn)) if choices is None else choices[s + i] for i in range(r)]
        b_idx = np.stack([p[rng.permutation(len(p))[:T]] if len(p) >= T else p[rng.integers(len(p), size=T)]
                          for p in pool])                                      # (r, T)
        b = B_t[torch.from_numpy(b_idx)]                                       # (r, T, D)
        if gaussian is None:
            perms = np.argsort(rng.random((r, T, G)), axis=2)                  # players in order of entry
            rank = np.argsort(perms, axis=2)                                   # position of each player
            rk = torch.from_numpy(rank[:, :, groups])                          # (r, T, D)
            st = torch.from_numpy(steps)[None, None, :, None]                  # (1, 1, G-1, 1)
            fwd = rk[:, :, None, :] < st                                       # after s players entered
            rev = rk[:, :, None, :] >= (G - st)
            mask = torch.stack([fwd, rev], dim=2)                              # (r, T, 2, G-1, D)
            pts = torch.where(mask, X[:, None, None, None, :], b[:, :, None, None, :])
        else:
            shared = np.argsort(rng.random((T, G)), axis=1)                    # one permutation per t, all rows
            perms = np.broadcast_to(shared, (r, T, G))
            pts = torch.empty(r, T, 2, G - 1, D)
            for t in range(T):
                for way, order in enumerate((shared[t], shared[t][::-1])):
                    inside = np.zeros(G, dtype=bool)
                    for j in range(G - 1):
                        inside[order[j]] = True
                        pts[:, t, way, j] = gaussian.fill(X, b[:, t], inside[groups])
        f_pts = fn(pts.reshape(-1, D)).reshape(r, T, 2, G - 1)
        fb = fB[b_idx]                                                         # (r, T)
        path = np.concatenate([np.broadcast_to(fb[:, :, None, None], (r, T, 2, 1)), f_pts,
                               np.broadcast_to(fX[s : s + r, None, None, None], (r, T, 2, 1))], axis=3)
        gains = np.diff(path, axis=3)                                          # (r, T, 2, G)
        Y = np.zeros((r, T, G))
        rows, ts = np.meshgrid(np.arange(r), np.arange(T), indexing="ij")
        for step in range(G):
            Y[rows, ts, perms[:, :, step]] += 0.5 * gains[:, :, 0, step]
            Y[rows, ts, perms[:, :, G - 1 - step]] += 0.5 * gains[:, :, 1, step]
        C = fb - base[s : s + r, None]                                         # (r, T)
        Cc = C - C.mean(axis=1, keepdims=True)
        Yc = Y - Y.mean(axis=1, keepdims=True)
        var_c = np.sum(Cc * Cc, axis=1)                                        # (r,)
        cov = np.einsum("rtg,rt->rg", Yc, Cc)
        beta = np.where(var_c[:, None] > 0, cov / np.where(var_c > 0, var_c, 1.0)[:, None], 0.0)
        phi[s : s + r] = Y.mean(axis=1) - beta * C.mean(axis=1)[:, None]
        resid = Yc - beta[:, None, :] * Cc[:, :, None]
        se[s : s + r] = np.sqrt(np.sum(resid * resid, axis=1) / max(T - 1, 1) / T)
    return phi, se


def _groups(fitted, patch) -> tuple[np.ndarray, int]:
    """(player of each flattened network input, patch size or 1)."""
    D = int(math.prod(fitted.net_shape))
    if not fitted.layout.image:
        if patch not in (None, "auto", 1):
            raise ConfigError(f"patch={patch!r} groups the pixels of images; this model explains a table "
                              f"(input shape {fitted.layout.input_shape}). Leave patch out.")
        return np.arange(D), 1
    c, h, w = fitted.layout.image_shape
    if patch in (None, "auto"):
        p = max(1, math.ceil(math.sqrt(h * w / AUTO_PLAYERS)))
    elif isinstance(patch, (int, np.integer)) and not isinstance(patch, bool) and patch >= 1:
        p = int(patch)
    else:
        raise ConfigError(f"patch must be 'auto' or a positive integer (pixels per side of a square patch), "
                          f"got {patch!r}.")
    ii, jj = np.meshgrid(np.arange(h) // p, np.arange(w) // p, indexing="ij")
    spatial = (ii * math.ceil(w / p) + jj).ravel()
    return np.tile(spatial, c), p


def _nearest(Xn: np.ndarray, Bn: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """(n, k) indices of each row's k nearest background rows, rows equal to it left out."""
    B = torch.as_tensor(Bn, dtype=torch.float32)
    centre = B.mean(dim=0)
    B = B - centre
    k = min(k, len(B))
    out = []
    for i in range(0, len(Xn), block):
        d = torch.cdist(torch.as_tensor(Xn[i : i + block], dtype=torch.float32) - centre, B)
        d = torch.where(d > 0, d, torch.full_like(d, float("inf")))
        out.append(d.topk(k, dim=1, largest=False).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)
